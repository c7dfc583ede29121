/* SPDX-License-Identifier: Apache-2.0 */
/* qcow2-fixture.c: what the qcow2 tests share: running qemu-img, temporary
 * paths, generated data. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "qcow2/internal.h"
#include "qcow2-fixture.h"

char tmpdir[256];
bool have_qemu_img;

/* Run argv (no shell); its stdout and stderr go to *output (may be NULL).
 * Returns the exit status, or -1 when it did not exit. */
int
run (const char *const argv[], char **output)
{
  int p[2], status;
  pid_t pid;
  char *out = NULL;
  size_t len = 0, cap = 0;
  ssize_t n;

  if (pipe2 (p, O_CLOEXEC) == -1)
    fail_msg ("pipe: %m");
  pid = fork ();
  if (pid == -1)
    fail_msg ("fork: %m");
  if (pid == 0) {
    dup2 (p[1], 1);
    dup2 (p[1], 2);
    execvp (argv[0], (char *const *) argv);
    _exit (127);
  }
  close (p[1]);
  for (;;) {
    if (len + 4096 + 1 > cap) {
      cap = cap ? cap * 2 : 8192;
      out = realloc (out, cap);
      assert_non_null (out);
    }
    n = read (p[0], out + len, cap - len - 1);
    if (n == -1 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    len += (size_t) n;
  }
  out[len] = '\0';
  close (p[0]);
  while (waitpid (pid, &status, 0) == -1)
    assert_int_equal (errno, EINTR);
  if (output != NULL)
    *output = out;
  else
    free (out);
  return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}

void
run_ok (const char *const argv[])
{
  char *out;
  int status = run (argv, &out);

  if (status != 0)
    fail_msg ("%s %s: exit %d:\n%s", argv[0], argv[1], status, out);
  free (out);
}

void
need_qemu_img (void)
{
  if (!have_qemu_img) {
    print_message ("qemu-img is not installed (apt-get install qemu-utils)\n");
    skip ();
  }
}

void
check_clean (const char *path)
{
  const char *argv[] = { "qemu-img", "check", "-f", "qcow2", path, NULL };

  run_ok (argv);
}

void
compare_with (const char *image, const char *raw)
{
  const char *argv[]
    = { "qemu-img", "compare", "-f", "qcow2", "-F", "raw", image, raw, NULL };

  run_ok (argv);
}

void
tmp_path (char *buf, size_t size, const char *name)
{
  snprintf (buf, size, "%s/%s", tmpdir, name);
}

uint64_t
xorshift (uint64_t *s)
{
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

/* Incompressible bytes depending on seed. */
void
fill_random (unsigned char *buf, size_t len, uint64_t seed)
{
  uint64_t s = seed * UINT64_C (0x9e3779b97f4a7c15) + 1;
  size_t i;

  for (i = 0; i < len; i++)
    buf[i] = (unsigned char) (xorshift (&s) >> 24);
}

/* Text that compresses well and differs with seed. */
void
fill_text (unsigned char *buf, size_t len, uint64_t seed)
{
  size_t pos = 0;
  int line = 0;

  while (pos < len) {
    char tmp[80];
    int n = snprintf (tmp, sizeof tmp, "seed %llu line %d of some text\n",
                      (unsigned long long) seed, line++);
    size_t k = (size_t) n < len - pos ? (size_t) n : len - pos;

    memcpy (buf + pos, tmp, k);
    pos += k;
  }
}

void
pwrite_full (int fd, const void *buf, size_t len, uint64_t off)
{
  assert_int_equal (qcow2_pwrite_all (fd, buf, len, off), 0);
}
