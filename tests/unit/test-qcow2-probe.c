/* SPDX-License-Identifier: Apache-2.0 */
/* test-qcow2-probe.c: qcow2_probe on good images, and on truncated and hostile ones. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/error.h"
#include "qcow2/internal.h"
#include "qcow2/qcow2.h"

#define MiB (UINT64_C (1) << 20)

#define assert_contains(haystack, needle)                                      \
  do {                                                                         \
    const char *_h = (haystack), *_n = (needle);                               \
    if (_h == NULL || strstr (_h, _n) == NULL)                                 \
      fail_msg ("\"%s\" does not contain \"%s\"", _h ? _h : "(null)", _n);     \
  } while (0)

static char tmpdir[256];
static char good[PATH_MAX]; /* a valid overlay image of ours */
static unsigned char good_bytes[64 * 1024];
static size_t good_len;

static void
tmp_path (char *buf, size_t size, const char *name)
{
  snprintf (buf, size, "%s/%s", tmpdir, name);
}

/* Run argv (no shell), its output discarded; the exit status or -1. */
static int
run (const char *const argv[])
{
  pid_t pid = fork ();
  int status;

  if (pid == 0) {
    int null = open ("/dev/null", O_WRONLY);

    dup2 (null, 1);
    dup2 (null, 2);
    execvp (argv[0], (char *const *) argv);
    _exit (127);
  }
  if (pid == -1 || waitpid (pid, &status, 0) == -1)
    return -1;
  return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}

static void
need_qemu_img (void)
{
  const char *argv[] = { "qemu-img", "--version", NULL };

  if (run (argv) != 0) {
    print_message ("qemu-img is not installed (apt-get install qemu-utils)\n");
    skip ();
  }
}

/* Probe the file at path: 0 or -1 (info released either way). */
static int
probe_path (const char *path, struct qcow2_info *info)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  int r;

  assert_true (fd >= 0);
  r = qcow2_probe (fd, info);
  close (fd);
  return r;
}

/* A file holding the first len bytes of the good image. */
static void
write_prefix (const char *path, const unsigned char *bytes, size_t len)
{
  int fd = open (path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

  assert_true (fd >= 0);
  assert_int_equal (qcow2_pwrite_all (fd, bytes, len, 0), 0);
  close (fd);
}

static void
probes_our_overlay (void **state)
{
  struct qcow2_info info;

  assert_int_equal (probe_path (good, &info), 0);
  assert_int_equal (info.version, 3);
  assert_int_equal (info.virtual_size, 10 * MiB + 512);
  assert_int_equal (info.cluster_bits, 12);
  assert_int_equal (info.cluster_size, 4096);
  assert_int_equal (info.compression, QCOW2_COMPRESSION_ZSTD);
  assert_string_equal (info.backing_file, "base.qcow2");
  assert_string_equal (info.backing_format, "qcow2");
  assert_int_equal (info.refcount_order, 4);
  assert_int_equal (info.header_length, 112);
  assert_int_equal (info.incompatible_features, 8);
  assert_false (info.dirty);
  assert_false (info.corrupt);
  assert_int_equal (info.nb_snapshots, 0);
  qcow2_info_release (&info);
  qcow2_info_release (&info); /* twice is harmless */
}

static void
probes_images_qemu_img_made (void **state)
{
  char v2[PATH_MAX], z[PATH_MAX], base[PATH_MAX], ov[PATH_MAX];
  struct qcow2_info info;

  need_qemu_img ();
  tmp_path (v2, sizeof v2, "v2.qcow2");
  tmp_path (z, sizeof z, "zstd.qcow2");
  tmp_path (base, sizeof base, "base.qcow2");
  tmp_path (ov, sizeof ov, "ov.qcow2");
  {
    const char *a1[] = { "qemu-img", "create",      "-q", "-f", "qcow2",
                         "-o",       "compat=0.10", v2,   "1G", NULL };
    const char *a2[] = { "qemu-img",
                         "create",
                         "-q",
                         "-f",
                         "qcow2",
                         "-o",
                         "compression_type=zstd,cluster_size=2M",
                         z,
                         "100M",
                         NULL };
    const char *a3[]
      = { "qemu-img", "create", "-q", "-f", "qcow2", base, "20M", NULL };
    const char *a4[] = { "qemu-img",   "create", "-q",    "-f", "qcow2", "-b",
                         "base.qcow2", "-F",     "qcow2", ov,   NULL };

    assert_int_equal (run (a1), 0);
    assert_int_equal (run (a2), 0);
    assert_int_equal (run (a3), 0);
    assert_int_equal (run (a4), 0);
  }

  assert_int_equal (probe_path (v2, &info), 0);
  assert_int_equal (info.version, 2);
  assert_int_equal (info.virtual_size, 1024 * MiB);
  assert_int_equal (info.cluster_size, 65536);
  assert_int_equal (info.header_length, 72);
  assert_int_equal (info.refcount_order, 4);
  assert_int_equal (info.compression, QCOW2_COMPRESSION_ZLIB);
  assert_null (info.backing_file);
  qcow2_info_release (&info);

  assert_int_equal (probe_path (z, &info), 0);
  assert_int_equal (info.version, 3);
  assert_int_equal (info.cluster_bits, 21);
  assert_int_equal (info.compression, QCOW2_COMPRESSION_ZSTD);
  qcow2_info_release (&info);

  assert_int_equal (probe_path (ov, &info), 0);
  assert_int_equal (info.virtual_size, 20 * MiB);
  assert_string_equal (info.backing_file, "base.qcow2");
  assert_string_equal (info.backing_format, "qcow2");
  assert_int_equal (info.compression, QCOW2_COMPRESSION_ZLIB);
  qcow2_info_release (&info);
}

static void
truncated_files_are_refused (void **state)
{
  static const struct {
    size_t len;
    const char *msg;
  } cases[] = {
    { 0, "the file has only 0 bytes" },
    { 3, "the file has only 3 bytes" },
    { 4, "truncated header (4 bytes)" },
    { 71, "truncated header (71 bytes)" },
    { 103, "truncated header (103 bytes)" },
    { 104, "truncated header (104 of 112 bytes)" },
    { 111, "truncated header (111 of 112 bytes)" },
    { 112, "lies outside the file" },
    { 4096, "lies outside the file" },
  };
  char path[PATH_MAX];
  struct qcow2_info info;
  size_t i;

  tmp_path (path, sizeof path, "truncated.qcow2");
  for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    write_prefix (path, good_bytes, cases[i].len);
    assert_int_equal (probe_path (path, &info), -1);
    assert_contains (get_error (), cases[i].msg);
  }
  /* Cut inside the refcount table. */
  write_prefix (path, good_bytes,
                qcow2_get_be64 (good_bytes + QCOW2_OFF_REFCOUNT_TABLE_OFFSET)
                  + 100);
  assert_int_equal (probe_path (path, &info), -1);
  assert_contains (get_error (), "lies outside the file");
}

/* One field of the good image's header replaced. */
struct mutation {
  size_t offset;
  int width; /* 1, 4 or 8 bytes */
  uint64_t value;
  const char *msg;
};

static const struct mutation mutations[] = {
  { 0, 1, 'X', "not a qcow2 image (bad magic)" },
  { 4, 4, 1, "unsupported qcow2 version 1" },
  { 4, 4, 4, "unsupported qcow2 version 4" },
  { 20, 4, 8, "cluster_bits 8 is out of range" },
  { 20, 4, 22, "cluster_bits 22 is out of range" },
  { 20, 4, 0xffffffff, "cluster_bits 4294967295 is out of range" },
  { 100, 4, 96, "invalid header length 96" },
  { 100, 4, 113, "invalid header length 113" },
  { 100, 4, 8192, "invalid header length 8192" },
  { 72, 8, 0x28, "unsupported incompatible features 0x20" },
  { 104, 1, 2, "unknown compression type 2" },
  { 72, 8, 0, "does not match the compression type feature bit" },
  { 96, 4, 7, "refcount order 7 is out of range" },
  { 32, 4, 3, "unknown encryption method 3" },
  { 36, 4, 0, "too small for a virtual size" },
  { 36, 4, 0x10000000, "is too large" },
  { 24, 8, UINT64_C (1) << 62, "too small for a virtual size" },
  { 40, 8, 4096 + 8, "L1 table offset 4104 is not cluster aligned" },
  { 40, 8, UINT64_C (1) << 50, "lies outside the file" },
  { 40, 8, UINT64_C (0xfffffffffffff000), "lies outside the file" },
  { 48, 8, 0, "lies outside the file" },
  { 56, 4, 0, "invalid refcount table size (0 clusters)" },
  { 56, 4, 0xffffffff, "invalid refcount table size" },
  { 60, 4, 1, "snapshot table at offset 0" },
  { 16, 4, 0, "invalid backing file name length 0" },
  { 16, 4, 2000, "invalid backing file name length 2000" },
  { 8, 8, 4090, "is outside the first cluster" },
  { 8, 8, 50, "is outside the first cluster" },
  { 8, 8, UINT64_C (1) << 62, "is outside the first cluster" },
  { 140, 1, 0, "backing file name contains a NUL byte" },
  { 116, 4, 0xffffffff, "does not fit in the header area" },
  { 116, 4, 0, "invalid backing format header extension (0 bytes)" },
  { 116, 4, 16, "invalid backing format header extension (16 bytes)" },
  { 120, 1, 0, "backing format contains a NUL byte" },
  { 128, 8, UINT64_C (0x0000000100000004),
    "header extension 0x00000001 at offset 128 (4 bytes) does not fit" },
};

static void
put_field (unsigned char *b, const struct mutation *m)
{
  switch (m->width) {
  case 1:
    b[m->offset] = (unsigned char) m->value;
    break;
  case 4:
    qcow2_put_be32 (b + m->offset, (uint32_t) m->value);
    break;
  default:
    qcow2_put_be64 (b + m->offset, m->value);
    break;
  }
}

static void
malformed_headers_are_refused (void **state)
{
  char path[PATH_MAX];
  unsigned char *copy = malloc (good_len);
  struct qcow2_info info;
  size_t i;

  assert_non_null (copy);
  tmp_path (path, sizeof path, "malformed.qcow2");
  for (i = 0; i < sizeof mutations / sizeof mutations[0]; i++) {
    memcpy (copy, good_bytes, good_len);
    put_field (copy, &mutations[i]);
    write_prefix (path, copy, good_len);
    if (probe_path (path, &info) == 0)
      fail_msg ("mutation %zu (offset %zu) was accepted", i,
                mutations[i].offset);
    assert_contains (get_error (), mutations[i].msg);
    assert_null (info.backing_file);
    assert_null (info.backing_format);
  }
  free (copy);
}

static void
random_corruption_never_crashes (void **state)
{
  char path[PATH_MAX];
  unsigned char *copy = malloc (good_len);
  uint64_t s = 88172645463325252u;
  unsigned accepted = 0, i;
  int fd;

  assert_non_null (copy);
  tmp_path (path, sizeof path, "fuzz.qcow2");
  fd = open (path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  assert_true (fd >= 0);
  for (i = 0; i < 4000; i++) {
    struct qcow2_info info;
    size_t len = good_len, k, n;

    memcpy (copy, good_bytes, good_len);
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    n = 1 + s % 6;
    for (k = 0; k < n; k++) {
      s ^= s << 13, s ^= s >> 7, s ^= s << 17;
      /* Mostly the header and its extensions, sometimes anywhere. */
      copy[(s >> 8) % (k == 0 ? 160 : good_len)] = (unsigned char) (s >> 40);
    }
    if (s % 10 == 0)
      len = (size_t) ((s >> 20) % good_len);
    assert_int_equal (ftruncate (fd, 0), 0);
    assert_int_equal (qcow2_pwrite_all (fd, copy, len, 0), 0);
    if (qcow2_probe (fd, &info) == 0) {
      accepted++;
      assert_true (info.cluster_size >= 512 && info.cluster_size <= 2 * MiB);
      assert_true (info.backing_file == NULL
                   || strlen (info.backing_file) <= 1023);
      qcow2_info_release (&info);
    }
    else
      assert_true (strlen (get_error ()) > 0);
  }
  close (fd);
  free (copy);
  /* Some corruptions are harmless (data bytes, unused padding). */
  assert_true (accepted > 0);
}

static void
non_images_are_refused (void **state)
{
  struct qcow2_info info;
  char path[PATH_MAX];
  unsigned char junk[8192];
  int fd;

  memset (junk, 0xa5, sizeof junk);
  tmp_path (path, sizeof path, "junk");
  write_prefix (path, junk, sizeof junk);
  assert_int_equal (probe_path (path, &info), -1);
  assert_contains (get_error (), "not a qcow2 image (bad magic)");

  fd = open (tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  assert_true (fd >= 0);
  assert_int_equal (qcow2_probe (fd, &info), -1);
  assert_contains (get_error (), "not a regular file or block device");
  close (fd);
}

/* ---- setup: one good image, kept in memory ---- */

static int
make_good_image (void)
{
  struct qcow2_writer_options o = {
    .virtual_size = 10 * MiB + 512,
    .cluster_size = 4096,
    .backing_file = "base.qcow2",
    .compression = QCOW2_COMPRESSION_ZSTD,
  };
  unsigned char data[8192];
  struct qcow2_writer *w;
  ssize_t n;
  int fd;

  memset (data, 7, sizeof data);
  tmp_path (good, sizeof good, "good.qcow2");
  fd = open (good, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd == -1)
    return -1;
  w = qcow2_writer_new (fd, &o);
  if (w == NULL || qcow2_writer_write (w, 0, data, sizeof data) == -1
      || qcow2_writer_zero (w, 8 * MiB, 4096) == -1
      || qcow2_writer_finish (w) == -1) {
    fprintf (stderr, "making the test image: %s\n", get_error ());
    qcow2_writer_free (w);
    close (fd);
    return -1;
  }
  qcow2_writer_free (w);
  n = pread (fd, good_bytes, sizeof good_bytes, 0);
  close (fd);
  if (n <= 0 || (size_t) n == sizeof good_bytes)
    return -1;
  good_len = (size_t) n;
  return 0;
}

static int
remove_one (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  return remove (path);
}

static int
setup (void **state)
{
  const char *base = getenv ("TMPDIR") ? getenv ("TMPDIR") : "/tmp";

  snprintf (tmpdir, sizeof tmpdir, "%s/knib-qcow2-probe.XXXXXX", base);
  if (mkdtemp (tmpdir) == NULL)
    return -1;
  return make_good_image ();
}

static int
teardown (void **state)
{
  return nftw (tmpdir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (probes_our_overlay),
    cmocka_unit_test (probes_images_qemu_img_made),
    cmocka_unit_test (truncated_files_are_refused),
    cmocka_unit_test (malformed_headers_are_refused),
    cmocka_unit_test (random_corruption_never_crashes),
    cmocka_unit_test (non_images_are_refused),
  };

  return cmocka_run_group_tests (tests, setup, teardown);
}
