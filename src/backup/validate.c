/* SPDX-License-Identifier: Apache-2.0 */
/* validate.c: boot validation: does this backup boot?  Steps and evidence.
 *
 * DESIGN.md "Validation".  A throwaway VM (vm.c) boots the backup; the
 * guest agent's first answer is the boot, then a screenshot and a
 * command in the guest.  When the agent never answers, what needs no
 * agent says why: the pvpanic device's GUEST_PANICKED event, the VGA
 * text screen and the serial console. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "backup/internal.h"
#include "common/base64.h"
#include "common/cleanup.h"
#include "common/debug.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/scratch.h"
#include "common/testhook.h"
#include "common/util.h"
#include "qmp/agent.h"

/* The VGA text buffer: 80x25 cells of character and attribute. */
#define VGA_TEXT_ADDR 0xB8000
#define VGA_COLS 80
#define VGA_ROWS 25
#define VGA_TEXT_SIZE (VGA_COLS * VGA_ROWS * 2)

#define SLOTS_DIR "slots"
#define SLOT_POLL_MS 200
#define LOCK_POLL_MS 1000
#define EXEC_POLL_MS 500
#define SCREEN_FILE "vga.bin"
#define SCREENSHOT_MAX (64u << 20)
/* The most of a command's output kept (each of stdout and stderr). */
#define OUTPUT_KEEP (64u * 1024)
#define TAIL_LINES 10

/* ---- The pure parts ---- */

char *
validate_screen_text (const unsigned char *buf, size_t len)
{
  size_t rows = len / (VGA_COLS * 2);
  char *text, *p;

  if (rows > VGA_ROWS)
    rows = VGA_ROWS;
  text = malloc (rows * (VGA_COLS + 1) + 1);
  if (text == NULL) {
    set_error (errno, "malloc");
    return NULL;
  }
  p = text;
  for (size_t r = 0; r < rows; r++) {
    char *start = p;

    for (size_t c = 0; c < VGA_COLS; c++) {
      unsigned char ch = buf[(r * VGA_COLS + c) * 2];

      *p++ = ch >= 0x20 && ch < 0x7f ? (char) ch : ' ';
    }
    while (p > start && p[-1] == ' ')
      p--;
    *p++ = '\n';
  }
  while (p > text && p[-1] == '\n')
    p--;
  *p = '\0';
  return text;
}

/* What a screen or console says when the guest cannot go on alone. */
static const char *const dead_ends[] = {
  /* SeaBIOS, once every boot option failed.  Its "Boot failed: ..."
   * lines are no dead end: the next option (another disk) may boot. */
  "No bootable device",
  "No bootable option or device was found", /* OVMF */
  "UEFI Interactive Shell",     /* OVMF, when no boot option worked */
  "grub rescue>",               /* GRUB without its modules */
  "Kernel panic - not syncing", /* Linux */
  "Missing operating system",   /* an MBR without an active partition */
  "Operating system not found",
  "BOOTMGR is missing",
  "A disk read error occurred",
  "Give root password for maintenance", /* a failed fsck */
  "You are in emergency mode",
  "ALERT!  /dev/", /* initramfs: the root device does not exist */
  NULL,
};

/* The start of the line of the last dead end in text, or NULL. */
static const char *
dead_end_at (const char *text)
{
  const char *hit = NULL;

  /* The last one on the screen: a SeaBIOS "Boot failed" comes before
   * its "No bootable device". */
  for (size_t i = 0; dead_ends[i] != NULL; i++) {
    const char *p = text, *q;

    while ((q = strstr (p, dead_ends[i])) != NULL) {
      if (hit == NULL || q > hit)
        hit = q;
      p = q + 1;
    }
  }
  if (hit == NULL)
    return NULL;
  while (hit > text && hit[-1] != '\n')
    hit--;
  return hit;
}

char *
validate_dead_end (const char *text)
{
  const char *hit = dead_end_at (text);

  return hit ? strndup (hit, strcspn (hit, "\r\n")) : NULL;
}

/* A copy of line without control characters and ANSI escape sequences,
 * blanks trimmed. */
static char *
clean_line (const char *line, size_t len)
{
  char *out = malloc (len + 1), *p = out;

  if (out == NULL)
    return NULL;
  for (size_t i = 0; i < len; i++) {
    unsigned char ch = (unsigned char) line[i];

    if (ch == 0x1b) { /* ESC [ ... final byte */
      if (i + 1 < len && line[i + 1] == '[') {
        i += 2;
        while (i < len && !(line[i] >= 0x40 && line[i] <= 0x7e))
          i++;
      }
      continue;
    }
    if (ch == '\t')
      ch = ' ';
    if (ch < 0x20 || ch == 0x7f)
      continue;
    *p++ = (char) ch;
  }
  while (p > out && p[-1] == ' ')
    p--;
  *p = '\0';
  {
    char *s = out;

    while (*s == ' ')
      s++;
    memmove (out, s, strlen (s) + 1);
  }
  return out;
}

int
validate_tail_lines (const char *text, size_t n, chain_string_vector *lines)
{
  const char *end = text + strlen (text);
  const char *starts[64];
  size_t found = 0, first;

  if (n > 64)
    n = 64;
  /* Walk back over the lines, keeping the last n that are not empty. */
  while (end > text && found < n) {
    const char *start = end;
    CLEANUP_FREE char *clean = NULL;

    while (start > text && start[-1] != '\n' && start[-1] != '\r')
      start--;
    clean = clean_line (start, end - start);
    if (clean == NULL) {
      set_error (ENOMEM, "console lines");
      return -1;
    }
    if (clean[0] != '\0')
      starts[found++] = start;
    end = start > text ? start - 1 : text;
  }
  for (first = found; first > 0; first--) {
    const char *start = starts[first - 1];
    char *clean = clean_line (start, strcspn (start, "\r\n"));

    if (clean == NULL || chain_string_vector_append (lines, clean) == -1) {
      free (clean);
      set_error (ENOMEM, "console lines");
      return -1;
    }
  }
  return 0;
}

/* ---- Results ---- */

void
validate_result_release (struct validate_result *r)
{
  free (r->vm);
  chain_validation_free (r->validation);
  chain_string_vector_release (&r->evidence);
  chain_string_vector_release (&r->notes);
  free (r->screenshot);
  free (r->console);
  free (r->out);
  free (r->err);
  free (r->scratch);
  memset (r, 0, sizeof *r);
  r->exit_code = -1;
}

/* Control characters out: a step's message is one line. */
static char *
one_line (char *s)
{
  for (char *p = s; p && *p; p++)
    if ((unsigned char) *p < 0x20 || *p == 0x7f)
      *p = ' ';
  return s;
}

/* Append a step (message taken, may be NULL). */
static int
add_step (struct chain_validation *v, const char *name, enum chain_check st,
          double seconds, char *message)
{
  struct chain_validation_step s = { .name = strdup (name),
                                     .status = st,
                                     .seconds = seconds,
                                     .message = one_line (message) };

  if (s.name == NULL
      || chain_validation_step_vector_append (&v->steps, s) == -1) {
    free (s.name);
    free (s.message);
    set_error (ENOMEM, "validation step");
    return -1;
  }
  if (st == CHAIN_CHECK_FAILED)
    v->status = CHAIN_CHECK_FAILED;
  return 0;
}

static void
evidence_add (struct validate_result *r, char *line)
{
  chain_note_add (&r->evidence, one_line (line));
}

/* ---- Slots: validation-jobs-per-host ---- */

static int
slot_try (int fd)
{
  struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };

  return fcntl (fd, F_OFD_SETLK, &fl);
}

/* Take one of limit slots ("<root>/slots/validate-N.lock"): *slot gets
 * the locked descriptor (-1 with no limit). */
static int
slot_take (const char *root, const struct validate_options *o, int *slot)
{
  CLEANUP_FREE char *dir = str_printf ("%s/" SLOTS_DIR, root);
  int64_t limit = o->jobs_per_host;
  CLEANUP_FREE int *fds = NULL;
  bool said = false;
  int r = -1;

  *slot = -1;
  if (limit < 1)
    return 0;
  if (dir == NULL)
    return -1;
  {
    int rootfd = scratch_root_open (root);

    if (rootfd == -1)
      return -1;
    close (rootfd);
  }
  if (fs_mkdir (dir) == -1) {
    set_error (errno, "scratch directory '%s'", dir);
    return -1;
  }
  fds = calloc (limit, sizeof *fds);
  if (fds == NULL) {
    set_error (errno, "calloc");
    return -1;
  }
  for (int64_t i = 0; i < limit; i++)
    fds[i] = -1;
  for (int64_t i = 0; i < limit; i++) {
    CLEANUP_FREE char *path
      = str_printf ("%s/validate-%lld.lock", dir, (long long) i);

    fds[i] = path ? open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0600) : -1;
    if (fds[i] == -1) {
      set_error (errno, "validation slot '%s'", path ? path : dir);
      goto out;
    }
  }
  for (;;) {
    for (int64_t i = 0; i < limit; i++)
      if (slot_try (fds[i]) == 0) {
        *slot = fds[i];
        fds[i] = -1;
        r = 0;
        goto out;
      }
    if (o->no_wait) {
      set_error (-EWOULDBLOCK,
                 "%lld validation%s already running on this host "
                 "(validation-jobs-per-host = %lld): try again later, or "
                 "leave out --no-wait to wait for it",
                 (long long) limit, limit == 1 ? " is" : "s are",
                 (long long) limit);
      goto out;
    }
    if (!said && o->waiting != NULL) {
      CLEANUP_FREE char *why = str_printf (
        "waiting: %lld validation%s already running on this host "
        "(validation-jobs-per-host = %lld)",
        (long long) limit, limit == 1 ? " is" : "s are", (long long) limit);

      if (why != NULL)
        o->waiting (o->opaque, why);
      said = true;
    }
    if (o->cancel && *o->cancel) {
      set_error (EINTR, "interrupted while waiting for a validation slot");
      goto out;
    }
    usleep (SLOT_POLL_MS * 1000);
  }
out:
  for (int64_t i = 0; i < limit; i++)
    if (fds[i] >= 0)
      close (fds[i]);
  return r;
}

/* ---- One run ---- */

struct run {
  struct chain_repo *repo;
  const struct validate_options *o;
  struct validate_result *r;
  struct chain_manifest *m;
  struct backup_vm *vm;
  struct qga_client *qga;
  char *definition;
  bool panicked;
  bool powered_off;
};

static bool
cancelled (const struct run *run)
{
  return run->o->cancel != NULL && *run->o->cancel;
}

/* The VGA text screen now, or NULL (with no error) when it cannot be
 * read. */
static char *
read_screen (struct run *run)
{
  CLEANUP_FREE char *path
    = str_printf ("%s/" SCREEN_FILE, backup_vm_dir (run->vm));
  CLEANUP_FREE char *data = NULL;
  struct error_saved err;
  char *text = NULL;
  size_t len;

  if (path == NULL)
    return NULL;
  error_save (&err);
  if (qmp_client_execute (
        backup_vm_qmp (run->vm), "pmemsave",
        json_pack ("{s:I, s:I, s:s}", "val", (json_int_t) VGA_TEXT_ADDR, "size",
                   (json_int_t) VGA_TEXT_SIZE, "filename", path),
        NULL)
        == 0
      && (data = fs_read_file (path, "screen", 2 * VGA_TEXT_SIZE, &len))
           != NULL)
    text = validate_screen_text ((const unsigned char *) data, len);
  else
    debug (DEBUG_CHAIN, "validate: screen: %s", get_error ());
  error_restore (&err);
  return text;
}

/* The end of the console log (at most VALIDATE_CONSOLE_KEEP bytes), or
 * NULL (no error) when there is none. */
static char *
read_console (struct run *run, size_t *len)
{
  CLEANUP_CLOSE int fd
    = open (backup_vm_console (run->vm), O_RDONLY | O_CLOEXEC);
  struct stat st;
  char *buf;
  ssize_t n;
  off_t start;

  if (fd == -1 || fstat (fd, &st) == -1)
    return NULL;
  start = st.st_size > (off_t) VALIDATE_CONSOLE_KEEP
            ? st.st_size - (off_t) VALIDATE_CONSOLE_KEEP
            : 0;
  buf = malloc (VALIDATE_CONSOLE_KEEP + 1);
  if (buf == NULL)
    return NULL;
  n = pread (fd, buf, VALIDATE_CONSOLE_KEEP, start);
  if (n < 0) {
    free (buf);
    return NULL;
  }
  buf[n] = '\0';
  /* A NUL byte in the log would cut the text short. */
  for (ssize_t i = 0; i < n; i++)
    if (buf[i] == '\0')
      buf[i] = ' ';
  *len = (size_t) n;
  return buf;
}

/* Events so far: GUEST_PANICKED, SHUTDOWN (the guest powered off). */
static void
read_events (struct run *run)
{
  struct qmp_client *c = backup_vm_qmp (run->vm);
  struct error_saved err;
  json_t *ev = NULL;

  error_save (&err);
  while (qmp_client_wait_event (c, NULL, NULL, NULL, 0, &ev) == 0) {
    const char *name = json_string_value (json_object_get (ev, "event"));

    if (name && strcmp (name, "GUEST_PANICKED") == 0)
      run->panicked = true;
    if (name && strcmp (name, "SHUTDOWN") == 0)
      run->powered_off = true;
    json_decref (ev);
    ev = NULL;
  }
  error_restore (&err);
}

/* Whether the guest is at a dead end: *why (a new string) says which. */
static bool
dead_end (struct run *run, char **why)
{
  CLEANUP_FREE char *screen = NULL;
  CLEANUP_FREE char *console = NULL;
  char *line;
  size_t len;

  *why = NULL;
  read_events (run);
  if (run->panicked) {
    console = read_console (run, &len);
    line = console ? validate_dead_end (console) : NULL;
    *why = line ? str_printf ("the guest kernel panicked (GUEST_PANICKED "
                              "event); the console says: %s",
                              line)
                : strdup ("the guest kernel panicked (GUEST_PANICKED event)");
    free (line);
    return true;
  }
  if (!backup_vm_alive (run->vm, why)) {
    if (run->powered_off) {
      free (*why);
      *why = strdup ("the guest powered off");
    }
    return true;
  }
  screen = read_screen (run);
  if (screen != NULL && (line = validate_dead_end (screen)) != NULL) {
    *why = str_printf ("the screen says: %s", line);
    free (line);
    return true;
  }
  console = read_console (run, &len);
  if (console != NULL && (line = validate_dead_end (console)) != NULL) {
    CLEANUP_FREE char *clean = clean_line (line, strlen (line));

    *why = str_printf ("the console says: %s", clean ? clean : line);
    free (line);
    return true;
  }
  return false;
}

/* The evidence of a failed boot: why, the screen, the console. */
static void
gather_evidence (struct run *run, const char *why)
{
  CLEANUP_FREE char *screen = read_screen (run);
  CLEANUP_FREE char *console = NULL;
  chain_string_vector lines = empty_vector;
  size_t len;

  if (why != NULL)
    evidence_add (run->r, strdup (why));
  if (screen != NULL && screen[0] != '\0'
      && validate_tail_lines (screen, TAIL_LINES, &lines) == 0) {
    evidence_add (run->r, strdup ("the screen's last lines:"));
    for (size_t i = 0; i < lines.len; i++)
      evidence_add (run->r, str_printf ("  screen: %s", lines.ptr[i]));
  }
  else
    evidence_add (run->r, strdup ("the screen shows no text (a graphics "
                                  "mode, or nothing): see the screenshot"));
  chain_string_vector_release (&lines);
  console = read_console (run, &len);
  /* What led to a dead end the console shows (a panic's cause comes
   * before its stack trace). */
  if (console != NULL && dead_end_at (console) != NULL) {
    const char *at = dead_end_at (console);
    CLEANUP_FREE char *upto
      = strndup (console, at - console + strcspn (at, "\r\n"));

    if (upto != NULL && validate_tail_lines (upto, TAIL_LINES / 2, &lines) == 0
        && lines.len > 0) {
      evidence_add (run->r, strdup ("the serial console up to its dead end:"));
      for (size_t i = 0; i < lines.len; i++)
        evidence_add (run->r, str_printf ("  console: %s", lines.ptr[i]));
    }
    chain_string_vector_release (&lines);
  }
  if (console != NULL && console[0] != '\0'
      && validate_tail_lines (console, TAIL_LINES, &lines) == 0
      && lines.len > 0) {
    evidence_add (run->r, strdup ("the serial console's last lines:"));
    for (size_t i = 0; i < lines.len; i++)
      evidence_add (run->r, str_printf ("  console: %s", lines.ptr[i]));
  }
  else
    evidence_add (run->r, strdup ("the serial console is empty (does the "
                                  "guest write to ttyS0?)"));
  chain_string_vector_release (&lines);
}

static int
step_boot (struct run *run)
{
  const struct validate_options *o = run->o;
  struct chain_validation *v = run->r->validation;
  int64_t deadline = deadline_after_ms ((int64_t) o->boot_timeout * 1000);
  CLEANUP_FREE char *why = NULL;
  double start = monotonic_seconds ();

  for (;;) {
    double tried = monotonic_seconds ();
    int left;

    if (cancelled (run)) {
      set_error (EINTR, "interrupted while the VM boots");
      return -1;
    }
    if (dead_end (run, &why))
      break;
    left = deadline_remaining_ms (deadline);
    if (left == 0)
      break;
    run->qga = qga_client_connect (
      backup_vm_agent_socket (run->vm),
      left < VALIDATE_AGENT_POLL_MS ? left : VALIDATE_AGENT_POLL_MS,
      (o->command_timeout + 30) * 1000, o->cancel);
    if (run->qga != NULL) {
      v->boot_seconds = backup_vm_uptime (run->vm);
      debug (DEBUG_CHAIN, "validate: the guest agent answered after %.1f s",
             v->boot_seconds);
      return add_step (v, "boot", CHAIN_CHECK_PASSED,
                       monotonic_seconds () - start,
                       str_printf ("the guest agent answered %.1f s after "
                                   "power-on",
                                   v->boot_seconds));
    }
    debug (DEBUG_CHAIN, "validate: %s", get_error ());
    error_clear ();
    /* A refused connection returns at once: do not spin. */
    if (monotonic_seconds () - tried < 1)
      usleep (1000000);
  }
  gather_evidence (run, why);
  return add_step (
    v, "boot", CHAIN_CHECK_FAILED, monotonic_seconds () - start,
    why ? str_printf ("the guest agent did not answer: %s", why)
        : str_printf ("the guest agent did not answer within %d s, and "
                      "neither the screen nor the console says why (is "
                      "qemu-guest-agent installed and enabled in the guest?)",
                      o->boot_timeout));
}

static bool
is_png (const char *data, size_t len)
{
  return len > 8 && memcmp (data, "\x89PNG\r\n\x1a\n", 8) == 0;
}

static int
step_screenshot (struct run *run)
{
  struct chain_validation *v = run->r->validation;
  CLEANUP_FREE char *path
    = str_printf ("%s/" CHAIN_VALIDATION_SCREENSHOT, backup_vm_dir (run->vm));
  CLEANUP_FREE char *data = NULL;
  double start = monotonic_seconds ();
  size_t len = 0;
  char *why;

  /* An earlier validation's screenshot would not show this one. */
  if (path == NULL
      || chain_backup_remove_validation_file (run->repo, run->m,
                                              CHAIN_VALIDATION_SCREENSHOT)
           == -1)
    return -1;
  if (!run->o->screenshot)
    return add_step (v, "screenshot", CHAIN_CHECK_SKIPPED, 0,
                     strdup ("--no-screenshot"));
  if (!backup_vm_alive (run->vm, &why)) {
    char *msg = str_printf ("no screen to take: %s", why ? why : "");

    free (why);
    return add_step (v, "screenshot", CHAIN_CHECK_FAILED, 0, msg);
  }
  if (qmp_client_execute (
        backup_vm_qmp (run->vm), "screendump",
        json_pack ("{s:s, s:s}", "filename", path, "format", "png"), NULL)
        == -1
      || (data = fs_read_file (path, "screenshot", SCREENSHOT_MAX, &len))
           == NULL) {
    why = strdup (get_error ());
    error_clear ();
    return add_step (v, "screenshot", CHAIN_CHECK_FAILED,
                     monotonic_seconds () - start, why);
  }
  if (!is_png (data, len))
    return add_step (v, "screenshot", CHAIN_CHECK_FAILED,
                     monotonic_seconds () - start,
                     strdup ("QEMU's screendump is not a PNG image"));
  if (chain_backup_write_validation_file (run->repo, run->m,
                                          CHAIN_VALIDATION_SCREENSHOT, data,
                                          len, &run->r->screenshot)
      == -1)
    return -1;
  v->screenshot = strdup (CHAIN_VALIDATION_DIR "/" CHAIN_VALIDATION_SCREENSHOT);
  if (v->screenshot == NULL)
    return -1;
  return add_step (v, "screenshot", CHAIN_CHECK_PASSED,
                   monotonic_seconds () - start,
                   str_printf ("%s (%zu bytes)", v->screenshot, len));
}

/* The command as one line for messages: its words, quoted when they
 * hold blanks. */
static char *
argv_text (const char *const *argv)
{
  size_t n = 1;
  char *s;

  for (size_t i = 0; argv[i]; i++)
    n += strlen (argv[i]) + 3;
  s = calloc (1, n);
  if (s == NULL)
    return NULL;
  for (size_t i = 0; argv[i]; i++) {
    bool q = argv[i][0] == '\0' || strpbrk (argv[i], " \t") != NULL;

    if (i > 0)
      strcat (s, " ");
    if (q)
      strcat (s, "\"");
    strcat (s, argv[i]);
    if (q)
      strcat (s, "\"");
  }
  return s;
}

/* out-data or err-data of a guest-exec-status reply, decoded. */
static char *
exec_output (const json_t *status, const char *key)
{
  const char *b64 = json_string_value (json_object_get (status, key));
  size_t len;
  char *out;

  if (b64 == NULL)
    return strdup ("");
  out = base64_decode (b64, &len);
  if (out == NULL) {
    error_clear ();
    return strdup ("");
  }
  if (len > OUTPUT_KEEP)
    out[OUTPUT_KEEP] = '\0';
  return out;
}

/* Run the command; *status gets the final guest-exec-status. */
static int
exec_command (struct run *run, json_t **status, bool *timed_out)
{
  const char *const *argv = run->o->argv;
  json_t *args = json_array (), *ret = NULL;
  int64_t deadline
    = deadline_after_ms ((int64_t) run->o->command_timeout * 1000);
  json_int_t pid;

  *status = NULL;
  *timed_out = false;
  for (size_t i = 1; args != NULL && argv[i] != NULL; i++)
    if (json_array_append_new (args, json_string (argv[i])) == -1) {
      json_decref (args);
      args = NULL;
    }
  if (args == NULL) {
    set_error (ENOMEM, "guest-exec");
    return -1;
  }
  if (qga_client_execute (run->qga, "guest-exec",
                          json_pack ("{s:s, s:o, s:b}", "path", argv[0], "arg",
                                     args, "capture-output", 1),
                          &ret)
      == -1)
    return -1;
  if (json_unpack (ret, "{s:I}", "pid", &pid) == -1) {
    json_decref (ret);
    set_error (EPROTO, "guest-exec: no pid in the agent's answer");
    return -1;
  }
  json_decref (ret);
  for (;;) {
    json_t *st = NULL;

    if (qga_client_execute (run->qga, "guest-exec-status",
                            json_pack ("{s:I}", "pid", pid), &st)
        == -1)
      return -1;
    if (json_is_true (json_object_get (st, "exited"))) {
      *status = st;
      return 0;
    }
    json_decref (st);
    if (cancelled (run)) {
      set_error (EINTR, "interrupted while the command runs in the guest");
      return -1;
    }
    if (deadline_remaining_ms (deadline) == 0) {
      *timed_out = true;
      return 0;
    }
    usleep (EXEC_POLL_MS * 1000);
  }
}

static int
step_command (struct run *run)
{
  const struct validate_options *o = run->o;
  struct chain_validation *v = run->r->validation;
  CLEANUP_FREE char *text = NULL;
  double start = monotonic_seconds ();
  json_t *st = NULL;
  bool timed_out;
  int code, sig;
  int r;

  if (o->argv == NULL || o->argv[0] == NULL)
    return add_step (v, "command", CHAIN_CHECK_SKIPPED, 0,
                     strdup ("no command given"));
  if (run->qga == NULL)
    return add_step (v, "command", CHAIN_CHECK_SKIPPED, 0,
                     strdup ("not run: the guest agent never answered"));
  text = argv_text (o->argv);
  if (text == NULL) {
    set_error (ENOMEM, "command");
    return -1;
  }
  if (exec_command (run, &st, &timed_out) == -1) {
    char *why;

    if (get_errno () == EINTR || get_errno () == ENOMEM)
      return -1;
    why = str_printf ("'%s': %s", text, get_error ());
    error_clear ();
    return add_step (v, "command", CHAIN_CHECK_FAILED,
                     monotonic_seconds () - start, why);
  }
  if (timed_out)
    return add_step (
      v, "command", CHAIN_CHECK_FAILED, monotonic_seconds () - start,
      str_printf ("'%s' still ran after %d s (--command-timeout)", text,
                  o->command_timeout));
  run->r->out = exec_output (st, "out-data");
  run->r->err = exec_output (st, "err-data");
  code = (int) json_integer_value (json_object_get (st, "exitcode"));
  sig = (int) json_integer_value (json_object_get (st, "signal"));
  json_decref (st);
  if (run->r->out == NULL || run->r->err == NULL) {
    set_error (ENOMEM, "command output");
    return -1;
  }
  run->r->exit_code = sig ? -1 : code;
  if (sig)
    return add_step (v, "command", CHAIN_CHECK_FAILED,
                     monotonic_seconds () - start,
                     str_printf ("'%s' was killed by signal %d", text, sig));
  if (o->expect_output != NULL) {
    regex_t re;
    bool match;

    if (regcomp (&re, o->expect_output, REG_EXTENDED | REG_NOSUB) != 0) {
      set_error (EINVAL, "--expect-output '%s' is not a regular expression",
                 o->expect_output);
      return -1;
    }
    match = regexec (&re, run->r->out, 0, NULL, 0) == 0;
    regfree (&re);
    r = add_step (v, "command", match ? CHAIN_CHECK_PASSED : CHAIN_CHECK_FAILED,
                  monotonic_seconds () - start,
                  str_printf ("'%s' exited with %d; its output %s '%s'", text,
                              code, match ? "matches" : "does not match",
                              o->expect_output));
    return r;
  }
  return add_step (
    v, "command",
    code == o->expect_exit ? CHAIN_CHECK_PASSED : CHAIN_CHECK_FAILED,
    monotonic_seconds () - start,
    code == o->expect_exit
      ? str_printf ("'%s' exited with %d", text, code)
      : str_printf ("'%s' exited with %d, not %d", text, code, o->expect_exit));
}

/* Keep the end of the console log with the backup. */
static int
store_console (struct run *run)
{
  CLEANUP_FREE char *data = NULL;
  size_t len = 0;

  data = read_console (run, &len);
  if (data == NULL)
    return 0;
  if (chain_backup_write_validation_file (run->repo, run->m,
                                          CHAIN_VALIDATION_CONSOLE, data, len,
                                          &run->r->console)
      == -1)
    return -1;
  run->r->validation->console
    = strdup (CHAIN_VALIDATION_DIR "/" CHAIN_VALIDATION_CONSOLE);
  return run->r->validation->console ? 0 : -1;
}

/* The chain must be whole before QEMU reads it. */
static int
check_backup (struct run *run)
{
  chain_manifest_vector chain = empty_vector;
  chain_string_vector errors = empty_vector;
  int r = -1;

  if (run->m->state == CHAIN_STATE_REMOVED) {
    set_error (-ENOENT,
               "backup '%s' of vm '%s' was deleted (its files stay only "
               "while later backups need them): validate a later backup",
               run->m->id, run->m->vm);
    return -1;
  }
  if (chain_backup_chain (run->repo, run->m->vm, run->m->id, &chain) == -1)
    goto out;
  if (chain_verify_structure (run->repo, &chain, &errors) == -1)
    goto out;
  if (errors.len > 0) {
    set_error (-EINVAL,
               "backup '%s' of vm '%s' fails its structural check: %s%s "
               "(knib verify tells more)",
               run->m->id, run->m->vm, errors.ptr[0],
               errors.len > 1 ? "; and more" : "");
    goto out;
  }
  r = 0;
out:
  chain_manifest_vector_release (&chain);
  chain_string_vector_release (&errors);
  return r;
}

/* The definition stored with the backup, or NULL (none). */
static int
load_definition (struct run *run)
{
  CLEANUP_FREE char *path
    = chain_backup_file_path (run->repo, run->m, BACKUP_DEFINITION_FILE);
  size_t len;

  if (path == NULL)
    return -1;
  run->definition = fs_read_file (path, "definition", 16u << 20, &len);
  if (run->definition == NULL && get_errno () == ENOENT) {
    error_clear ();
    return 0;
  }
  return run->definition ? 0 : -1;
}

/* The VM's shared lock, held briefly: to check the backup, start QEMU
 * on it and pin it; then to record the result.  A backup, delete or
 * merge of the VM holds it exclusively for a while: wait for it (saying
 * why once), unless no_wait. */
static struct chain_lock *
lock_vm (struct run *run, const char *purpose)
{
  const struct validate_options *o = run->o;
  bool said = false;

  for (;;) {
    struct chain_lock *lock
      = chain_lock_new (run->repo, run->r->vm, CHAIN_LOCK_SHARED, "validate",
                        said ? LOCK_POLL_MS : 0);

    if (lock != NULL || get_errno () != EWOULDBLOCK || o->no_wait)
      return lock;
    if (cancelled (run)) {
      set_error (EINTR, "interrupted while waiting for the lock of vm '%s'",
                 run->r->vm);
      return NULL;
    }
    if (!said && o->waiting != NULL) {
      CLEANUP_FREE char *why
        = str_printf ("waiting %s: %s", purpose, get_error ());

      if (why != NULL)
        o->waiting (o->opaque, why);
    }
    said = true;
    error_clear ();
  }
}

/* Pin the backup for as long as the VM's overlays read it (and this
 * process lives): delete, merge and compression refuse it meanwhile,
 * while backups of the VM go on. */
static int
pin_backup (struct run *run, struct chain_lock *lock)
{
  CLEANUP_FREE char *holder
    = str_printf ("a validation (knib pid %ld)", (long) getpid ());

  if (holder == NULL)
    return -1;
  for (size_t i = 0; i < run->m->disks.len; i++)
    if (chain_pin_add_owned (lock, run->m->id, run->m->disks.ptr[i].name,
                             holder, backup_vm_overlay (run->vm, i),
                             backup_vm_owner_file (run->vm))
        == -1)
      return -1;
  return 0;
}

/* Under the VM's shared lock (*lock): check the backup, start the VM on
 * it and pin it; then without the lock, boot and check; then record
 * the result under the lock again (*lock). */
static int
boot_and_check (struct run *run, struct chain_lock **lock)
{
  struct validate_result *r = run->r;
  struct chain_validation *v = r->validation;
  double start = monotonic_seconds ();
  chain_string_vector pruned = empty_vector;
  int ret;

  /* Pins of killed validations (and of consolidated quick restores)
   * count for nothing: drop them, saying so. */
  if (chain_pin_prune (*lock, &r->notes) == -1)
    return -1;
  test_stop_point ("validate-start");
  run->vm = backup_vm_start (run->repo, run->m, run->definition,
                             &run->o->vm_options, &r->notes);
  if (run->vm == NULL) {
    error_prepend ("backup '%s' of vm '%s'", run->m->id, run->m->vm);
    return -1;
  }
  /* QEMU has the images open: the backup is pinned from here on. */
  if (pin_backup (run, *lock) == -1)
    return -1;
  chain_lock_free (*lock);
  *lock = NULL;
  v->accel = strdup (backup_vm_accel_used (run->vm));
  if (v->accel == NULL || backup_vm_power_on (run->vm) == -1)
    return -1;
  if (step_boot (run) == -1 || step_screenshot (run) == -1
      || step_command (run) == -1 || store_console (run) == -1)
    return -1;
  v->seconds = monotonic_seconds () - start;
  if (run->o->vm_options.keep) {
    r->scratch = strdup (backup_vm_dir (run->vm));
    if (r->scratch == NULL)
      return -1;
  }
  backup_vm_stop (run->vm);
  *lock = lock_vm (run, "to record the result");
  if (*lock == NULL)
    return -1;
  ret = chain_backup_set_validation (run->repo, run->m->vm, run->m->id, v);
  /* The pin goes with the VM's scratch directory. */
  backup_vm_free (run->vm);
  run->vm = NULL;
  if (ret == 0 && chain_pin_prune (*lock, &pruned) == -1) {
    debug (DEBUG_CHAIN, "validate: pins: %s", get_error ());
    error_clear ();
  }
  chain_string_vector_release (&pruned);
  return ret;
}

int
backup_validate (struct chain_repo *repo, const struct validate_options *o,
                 struct validate_result *r)
{
  const char *root
    = o->vm_options.scratch ? o->vm_options.scratch : KNIB_DEFAULT_SCRATCH;
  struct run run = { .repo = repo, .o = o, .r = r };
  struct chain_lock *lock = NULL;
  int slot = -1, ret = -1;

  memset (r, 0, sizeof *r);
  r->exit_code = -1;
  if (o->expect_output != NULL) {
    regex_t re;

    if (regcomp (&re, o->expect_output, REG_EXTENDED | REG_NOSUB) != 0) {
      set_error (EINVAL, "--expect-output '%s' is not a regular expression",
                 o->expect_output);
      return -1;
    }
    regfree (&re);
  }
  if (backup_vm_reap (root, &r->notes) == -1)
    return -1;
  run.m = chain_backup_find (repo, o->vm, o->id);
  if (run.m == NULL)
    return -1;
  r->vm = strdup (run.m->vm);
  snprintf (r->id, sizeof r->id, "%s", run.m->id);
  r->validation = calloc (1, sizeof *r->validation);
  if (r->vm == NULL || r->validation == NULL) {
    set_error (ENOMEM, "validate");
    goto out;
  }
  r->validation->time = (int64_t) time (NULL);
  r->validation->boot_seconds = -1;
  if (slot_take (root, o, &slot) == -1)
    goto out;
  lock = lock_vm (&run, "to start");
  if (lock == NULL)
    goto out;
  /* Under the lock: the backup may have gone or changed meanwhile. */
  chain_manifest_free (run.m);
  run.m = chain_backup_find (repo, r->vm, r->id);
  if (run.m == NULL || check_backup (&run) == -1
      || load_definition (&run) == -1)
    goto out;
  ret = boot_and_check (&run, &lock);
out:
  qga_client_free (run.qga);
  backup_vm_free (run.vm);
  chain_lock_free (lock);
  if (slot >= 0)
    close (slot);
  chain_manifest_free (run.m);
  free (run.definition);
  return ret;
}
