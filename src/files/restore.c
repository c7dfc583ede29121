/* SPDX-License-Identifier: Apache-2.0 */
/* restore.c: a file of a backup put back into the running VM through its guest agent.
 *
 * The bytes go in bounded chunks (guest-file-open/write/close, base64)
 * to a temporary name in the target's directory; guest-exec of chmod,
 * chown and touch gives it the backup's mode, owner and mtime, and mv
 * renames it over the target, so the guest sees the old file or the
 * new one, never half of one.  When anything fails before the rename
 * the target is untouched and the temporary file is removed when the
 * agent still answers. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/base64.h"
#include "common/cleanup.h"
#include "common/error.h"
#include "internal.h"

/* Bytes per guest-file-write (base64 makes it a third bigger): well
 * below what the agent and libguestfs's pread take in one message. */
#define RESTORE_CHUNK (256u * 1024)
/* How long a chmod, chown, touch or mv in the guest may run. */
#define RESTORE_EXEC_TIMEOUT_MS 60000
#define RESTORE_EXEC_POLL_NS 50000000L

static int
agent_call (const struct files_restore_options *o, const char *command,
            json_t *args, json_t **result)
{
  return o->agent (o->opaque, command, args, result);
}

/* Run argv in the guest (guest-exec), wait for it; -1 with set_error
 * naming the program and its stderr when it fails. */
static int
guest_run (const struct files_restore_options *o, const char *const *argv)
{
  json_t *args = json_array (), *ret = NULL;
  json_int_t pid;
  int64_t waited_ms = 0;

  for (size_t i = 1; args != NULL && argv[i] != NULL; i++)
    json_array_append_new (args, json_string (argv[i]));
  if (agent_call (o, "guest-exec",
                  json_pack ("{s:s, s:o, s:b}", "path", argv[0], "arg", args,
                             "capture-output", 1),
                  &ret)
      == -1)
    return -1;
  pid = json_integer_value (json_object_get (ret, "pid"));
  json_decref (ret);
  for (;;) {
    struct timespec ts = { 0, RESTORE_EXEC_POLL_NS };
    const char *err;
    CLEANUP_FREE char *text = NULL;
    size_t len = 0;
    int code;

    if (agent_call (o, "guest-exec-status", json_pack ("{s:I}", "pid", pid),
                    &ret)
        == -1)
      return -1;
    if (!json_is_true (json_object_get (ret, "exited"))) {
      json_decref (ret);
      if (waited_ms >= RESTORE_EXEC_TIMEOUT_MS) {
        set_error (-ETIMEDOUT, "'%s' in the guest did not end within %d s",
                   argv[0], RESTORE_EXEC_TIMEOUT_MS / 1000);
        return -1;
      }
      nanosleep (&ts, NULL);
      waited_ms += RESTORE_EXEC_POLL_NS / 1000000;
      continue;
    }
    code = json_object_get (ret, "exitcode")
             ? (int) json_integer_value (json_object_get (ret, "exitcode"))
             : -1;
    err = json_string_value (json_object_get (ret, "err-data"));
    if (code != 0 && err != NULL)
      text = base64_decode (err, &len);
    json_decref (ret);
    if (code == 0)
      return 0;
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
      text[--len] = '\0';
    set_error (0, "'%s' in the guest failed (%s %d)%s%s", argv[0],
               code == -1 ? "killed by a signal or" : "exit status", code,
               text && len ? ": " : "", text && len ? text : "");
    return -1;
  }
}

int
files_guest_check (const struct files_restore_options *o)
{
  static const char *const needed[] = {
    "guest-file-open", "guest-file-write",  "guest-file-close",
    "guest-exec",      "guest-exec-status",
  };
  json_t *ret = NULL;
  const json_t *cmds, *c;
  size_t i;

  /* A frozen guest cannot take a file (and its agent then reports
   * most commands disabled); an agent without the command cannot
   * freeze either. */
  if (agent_call (o, "guest-fsfreeze-status", NULL, &ret) == 0) {
    bool frozen = strcmp (json_string_value (ret) ?: "", "frozen") == 0;

    json_decref (ret);
    if (frozen) {
      set_error (-EBUSY, "the guest's filesystems are frozen "
                         "(guest-fsfreeze-status): thaw them first");
      return -1;
    }
  }
  else
    error_clear ();
  if (agent_call (o, "guest-info", NULL, &ret) == -1)
    return -1;
  cmds = json_object_get (ret, "supported_commands");
  for (size_t k = 0; k < sizeof needed / sizeof needed[0]; k++) {
    bool enabled = false;

    json_array_foreach (
      cmds, i,
      c) if (strcmp (json_string_value (json_object_get (c, "name")) ?: "",
                     needed[k])
             == 0) enabled
      = json_is_true (json_object_get (c, "enabled"));
    if (!enabled) {
      json_decref (ret);
      set_error (-ENOTSUP,
                 "the guest agent does not allow '%s', which a restore "
                 "needs (the guest's qemu-ga --block-rpcs or "
                 "--allow-rpcs list)",
                 needed[k]);
      return -1;
    }
  }
  json_decref (ret);
  return 0;
}

int
files_guest_exists (const struct files_restore_options *o, const char *path)
{
  json_t *ret = NULL;
  json_int_t h;

  if (agent_call (o, "guest-file-open",
                  json_pack ("{s:s, s:s}", "path", path, "mode", "r"), &ret)
      == -1) {
    if (strstr (get_error (), "No such file or directory") != NULL) {
      error_clear ();
      return 0;
    }
    return -1;
  }
  h = json_integer_value (ret);
  json_decref (ret);
  if (agent_call (o, "guest-file-close", json_pack ("{s:I}", "handle", h), NULL)
      == -1)
    return -1;
  return 1;
}

/* The temporary name beside target: "/etc/.hosts.knib-1234-5678". */
static char *
temp_name (const char *target)
{
  const char *slash = strrchr (target, '/');
  struct timespec ts;
  char *t;

  clock_gettime (CLOCK_REALTIME, &ts);
  if (asprintf (&t, "%.*s.%s.knib-%ld-%lx", (int) (slash - target + 1), target,
                slash + 1, (long) getpid (), (unsigned long) ts.tv_nsec)
      == -1) {
    set_error (ENOMEM, "restore");
    return NULL;
  }
  return t;
}

/* Copy the file's bytes into the open guest file h. */
static int
write_bytes (struct files_session *s, const char *full, const char *shown,
             const struct files_entry *e, json_int_t h,
             const struct files_restore_options *o, struct files_get_status *st)
{
  for (int64_t off = 0; off < e->size;) {
    size_t want = e->size - off < RESTORE_CHUNK ? (size_t) (e->size - off)
                                                : RESTORE_CHUNK;
    size_t got = 0;
    CLEANUP_FREE char *buf = guestfs_pread (s->g, full, want, off, &got);
    CLEANUP_FREE char *b64 = NULL;
    json_t *ret = NULL;
    json_int_t n;

    if (buf == NULL) {
      files_guestfs_error (s->g, shown);
      return -1;
    }
    if (got == 0) {
      set_error (-EIO, "'%s' ended at %" PRId64 " of %" PRId64 " bytes", shown,
                 off, e->size);
      return -1;
    }
    b64 = base64_encode (buf, got);
    if (b64 == NULL)
      return -1;
    if (agent_call (o, "guest-file-write",
                    json_pack ("{s:I, s:s}", "handle", h, "buf-b64", b64), &ret)
        == -1)
      return -1;
    n = json_integer_value (json_object_get (ret, "count"));
    json_decref (ret);
    if (n != (json_int_t) got) {
      set_error (-EIO,
                 "the guest agent wrote %" JSON_INTEGER_FORMAT
                 " of %zu bytes (is the guest's disk full?)",
                 n, got);
      return -1;
    }
    off += (int64_t) got;
    st->bytes += got;
    if (o->progress != NULL)
      o->progress (st, o->progress_opaque);
  }
  return 0;
}

int
files_session_restore (struct files_session *s, const struct files_path *p,
                       const char *target,
                       const struct files_restore_options *o)
{
  CLEANUP_FREE char *full = files_join (p->root, p->path);
  CLEANUP_FREE char *tmp = NULL;
  char mode[16], owner[48], mtime[32];
  struct files_entry e;
  struct files_get_status st = { NULL };
  json_t *ret = NULL;
  json_int_t h = -1;
  bool opened = false, left;
  struct error_saved saved;
  CLEANUP_FREE char *msg = NULL;
  int code;

  if (full == NULL || files_session_stat (s, p, &e) == -1)
    return -1;
  if (e.type != FILES_REGULAR) {
    set_error (-EINVAL,
               "'%s' is a %s: only regular files go back into a running "
               "VM ('knib files get' copies anything out)",
               p->display, files_type_name (e.type));
    files_entry_release (&e);
    return -1;
  }
  if (target[0] != '/' || target[strlen (target) - 1] == '/') {
    set_error (-EINVAL, "'%s': the guest path must be absolute and name a file",
               target);
    files_entry_release (&e);
    return -1;
  }
  tmp = temp_name (target);
  if (tmp == NULL) {
    files_entry_release (&e);
    return -1;
  }
  st.path = p->path;
  st.total_bytes = (uint64_t) e.size;
  st.total_files = 1;
  if (agent_call (o, "guest-file-open",
                  json_pack ("{s:s, s:s}", "path", tmp, "mode", "w"), &ret)
      == -1)
    goto fail;
  h = json_integer_value (ret);
  json_decref (ret);
  opened = true;
  if (write_bytes (s, full, p->display, &e, h, o, &st) == -1
      || agent_call (o, "guest-file-flush", json_pack ("{s:I}", "handle", h),
                     NULL)
           == -1)
    goto fail;
  opened = false;
  if (agent_call (o, "guest-file-close", json_pack ("{s:I}", "handle", h), NULL)
      == -1)
    goto fail;
  snprintf (mode, sizeof mode, "%o", (unsigned) e.mode & 07777);
  snprintf (owner, sizeof owner, "%" PRId64 ":%" PRId64, e.uid, e.gid);
  snprintf (mtime, sizeof mtime, "@%" PRId64, e.mtime_sec);
  /* chown before chmod: chown clears setuid and setgid bits. */
  if (guest_run (o, (const char *const[]) { "chown", owner, tmp, NULL }) == -1
      || guest_run (o, (const char *const[]) { "chmod", mode, tmp, NULL }) == -1
      || guest_run (
           o, (const char *const[]) { "touch", "-c", "-d", mtime, tmp, NULL })
           == -1
      || guest_run (o, (const char *const[]) { "mv", "-f", tmp, target, NULL })
           == -1)
    goto fail;
  st.files = 1;
  if (o->progress != NULL)
    o->progress (&st, o->progress_opaque);
  files_entry_release (&e);
  return 0;

fail:
  error_save (&saved);
  if (opened)
    (void) agent_call (o, "guest-file-close", json_pack ("{s:I}", "handle", h),
                       NULL);
  left = guest_run (o, (const char *const[]) { "rm", "-f", tmp, NULL }) == -1;
  error_restore (&saved);
  code = get_errno ();
  msg = strdup (get_error ());
  if (msg != NULL)
    set_error (code ? -code : 0, "%s (the guest keeps its old '%s'%s%s%s)", msg,
               target, left ? "; the temporary file '" : "", left ? tmp : "",
               left ? "' may be left there" : "");
  files_entry_release (&e);
  error_prepend ("restore of '%s' to '%s'", p->display, target);
  return -1;
}
