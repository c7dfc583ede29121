/* SPDX-License-Identifier: Apache-2.0 */
/* test-qmp-qemu.c: the QMP client against a real qemu-system-x86_64.
 *
 * One QEMU with no guest OS runs for the whole test, with a qcow2 disk
 * on device vda (node disk0).  It dies with the test: it is started
 * with PR_SET_DEATHSIG and stopped by the teardown. */
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
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "common/cleanup.h"
#include "common/command.h"
#include "common/error.h"
#include "qmp/qmp.h"

#define TIMEOUT_MS 30000

static char tmpdir[256];
static char socket_path[300];
static struct command *qemu;
static struct qmp_client *client;

static int
run_qemu_img (const char *fmt, const char *path, const char *size)
{
  struct command *cmd = command_new ("qemu-img");
  int r;

  command_add_args (cmd, "create", "-q", "-f", fmt, path, size, NULL);
  r = command_run (cmd, NULL);
  if (r == -1)
    fprintf (stderr, "%s\n", get_error ());
  command_free (cmd);
  return r;
}

static bool
have_program (const char *name)
{
  struct command *cmd = command_new (name);
  int r;

  command_add_arg (cmd, "--version");
  r = command_run (cmd, NULL);
  command_free (cmd);
  return r == 0;
}

static const char *
accel (void)
{
  int fd = open ("/dev/kvm", O_RDWR | O_CLOEXEC);

  if (fd == -1)
    return "tcg";
  close (fd);
  return "kvm";
}

static int
setup (void **state)
{
  const char *tmp = getenv ("TMPDIR");
  char disk[300], blockdev[400], machine[64];
  int i;

  (void) state;
  if (!have_program ("qemu-system-x86_64") || !have_program ("qemu-img")) {
    fprintf (stderr, "SKIP: qemu-system-x86_64 or qemu-img is not installed\n");
    exit (77);
  }
  snprintf (tmpdir, sizeof tmpdir, "%s/knib-qmpq-XXXXXX", tmp ? tmp : "/tmp");
  assert_non_null (mkdtemp (tmpdir));
  snprintf (socket_path, sizeof socket_path, "%s/qmp.sock", tmpdir);
  snprintf (disk, sizeof disk, "%s/a.qcow2", tmpdir);
  assert_int_equal (run_qemu_img ("qcow2", disk, "64M"), 0);
  snprintf (blockdev, sizeof blockdev,
            "driver=qcow2,node-name=disk0,file.driver=file,file.filename=%s",
            disk);
  snprintf (machine, sizeof machine, "accel=%s", accel ());

  qemu = command_new ("qemu-system-x86_64");
  command_add_args (qemu, "-machine", machine, "-m", "128", "-nodefaults",
                    "-display", "none", "-no-user-config", "-blockdev",
                    blockdev, "-device", "virtio-blk-pci,drive=disk0,id=vda",
                    NULL);
  command_add_arg (qemu, "-qmp");
  command_add_argf (qemu, "unix:%s,server=on,wait=off", socket_path);
  command_set_die_with_parent (qemu, true);
  if (command_start (qemu) == -1)
    fail_msg ("%s", get_error ());

  for (i = 0; i < 300; i++) {
    struct stat st;
    if (stat (socket_path, &st) == 0 && S_ISSOCK (st.st_mode))
      break;
    usleep (100000);
  }
  client = qmp_client_connect (socket_path, TIMEOUT_MS, NULL);
  if (client == NULL)
    fail_msg ("%s; qemu: %s", get_error (), command_get_stderr (qemu));
  return 0;
}

static int
teardown (void **state)
{
  CLEANUP_FREE char *rm = NULL;

  (void) state;
  qmp_client_free (client);
  if (command_stop (qemu) == -1)
    fprintf (stderr, "stopping qemu: %s\n", get_error ());
  command_free (qemu);
  {
    struct command *cmd = command_new ("rm");
    command_add_args (cmd, "-rf", tmpdir, NULL);
    if (command_run (cmd, NULL) == -1)
      fprintf (stderr, "%s\n", get_error ());
    command_free (cmd);
  }
  return 0;
}

static void
test_version (void **state)
{
  int major, minor, micro;
  json_t *result = NULL;

  (void) state;
  qmp_client_version (client, &major, &minor, &micro);
  assert_true (major >= 7);
  assert_int_equal (qmp_client_execute (client, "query-version", NULL, &result),
                    0);
  assert_int_equal (json_integer_value (json_object_get (
                      json_object_get (result, "qemu"), "major")),
                    major);
  json_decref (result);
}

static json_t *
find_disk0 (json_t *blocks)
{
  size_t i;
  json_t *b;

  json_array_foreach (blocks, i, b)
  {
    json_t *inserted = json_object_get (b, "inserted");
    const char *node
      = json_string_value (json_object_get (inserted, "node-name"));
    if (node && strcmp (node, "disk0") == 0)
      return b;
  }
  return NULL;
}

static void
test_query_block (void **state)
{
  json_t *result = NULL, *b;
  const char *qdev;

  (void) state;
  assert_int_equal (qmp_client_execute (client, "query-block", NULL, &result),
                    0);
  assert_true (json_is_array (result));
  b = find_disk0 (result);
  assert_non_null (b);
  qdev = json_string_value (json_object_get (b, "qdev"));
  assert_non_null (qdev);
  assert_non_null (strstr (qdev, "vda"));
  json_decref (result);
}

static void
test_error_class (void **state)
{
  (void) state;
  assert_int_equal (qmp_client_execute (client, "no-such-command", NULL, NULL),
                    -1);
  assert_int_equal (get_errno (), EREMOTEIO);
  assert_string_equal (qmp_client_error_class (client), "CommandNotFound");
  assert_non_null (strstr (get_error (), "no-such-command"));

  assert_int_equal (
    qmp_client_execute (client, "block-dirty-bitmap-add",
                        json_pack ("{s:s, s:s}", "node", "nope", "name", "x"),
                        NULL),
    -1);
  assert_string_equal (qmp_client_error_class (client), "GenericError");
  /* The client is still usable after QEMU's errors. */
  assert_int_equal (qmp_client_execute (client, "query-status", NULL, NULL), 0);
}

static void
test_bitmap (void **state)
{
  json_t *result = NULL, *bitmaps, *bm;
  size_t i;
  bool found = false;

  (void) state;
  assert_int_equal (
    qmp_client_execute (client, "block-dirty-bitmap-add",
                        json_pack ("{s:s, s:s, s:b}", "node", "disk0", "name",
                                   "knib-t", "persistent", 1),
                        NULL),
    0);
  assert_int_equal (qmp_client_execute (client, "query-block", NULL, &result),
                    0);
  bitmaps = json_object_get (json_object_get (find_disk0 (result), "inserted"),
                             "dirty-bitmaps");
  json_array_foreach (bitmaps, i, bm)
  {
    if (strcmp (json_string_value (json_object_get (bm, "name")), "knib-t")
        == 0) {
      found = true;
      assert_true (json_is_true (json_object_get (bm, "persistent")));
      assert_true (json_is_true (json_object_get (bm, "recording")));
    }
  }
  assert_true (found);
  json_decref (result);
  assert_int_equal (qmp_client_execute (client, "block-dirty-bitmap-remove",
                                        json_pack ("{s:s, s:s}", "node",
                                                   "disk0", "name", "knib-t"),
                                        NULL),
                    0);
}

static bool
is_job (const json_t *data, void *opaque)
{
  const char *want = opaque;
  const char *id = json_string_value (json_object_get (data, "id"));
  const char *status = json_string_value (json_object_get (data, "status"));

  return id && status && strcmp (id, "job-ok") == 0
         && strcmp (status, want) == 0;
}

static void
add_target (const char *node, const char *file, bool failing)
{
  char path[400];
  json_t *args;

  snprintf (path, sizeof path, "%s/%s", tmpdir, file);
  assert_int_equal (run_qemu_img ("qcow2", path, "64M"), 0);
  if (failing)
    args = json_pack ("{s:s, s:s, s:{s:s, s:[{s:s, s:i}], s:{s:s, s:s}}}",
                      "driver", "qcow2", "node-name", node, "file", "driver",
                      "blkdebug", "inject-error", "event", "pwritev", "errno",
                      5, "image", "driver", "file", "filename", path);
  else
    args
      = json_pack ("{s:s, s:s, s:{s:s, s:s}}", "driver", "qcow2", "node-name",
                   node, "file", "driver", "file", "filename", path);
  if (qmp_client_execute (client, "blockdev-add", args, NULL) == -1)
    fail_msg ("%s", get_error ());
}

static void
test_job_events (void **state)
{
  json_t *event = NULL;

  (void) state;
  add_target ("tgt-ok", "ok.qcow2", false);
  assert_int_equal (
    qmp_client_execute (client, "blockdev-backup",
                        json_pack ("{s:s, s:s, s:s, s:s, s:b}", "job-id",
                                   "job-ok", "device", "disk0", "target",
                                   "tgt-ok", "sync", "full", "auto-dismiss", 0),
                        NULL),
    0);
  /* The real block job's status change reaches us as an event. */
  assert_int_equal (qmp_client_wait_event (client, "JOB_STATUS_CHANGE", is_job,
                                           (void *) "concluded", TIMEOUT_MS,
                                           &event),
                    0);
  json_decref (event);
  assert_int_equal (qmp_client_job_wait (client, "job-ok", TIMEOUT_MS), 0);
  /* Dismissed: no longer listed. */
  assert_int_equal (qmp_client_job_wait (client, "job-ok", 1000), -1);
  assert_int_equal (get_errno (), ENOENT);
}

static void
test_job_failure (void **state)
{
  (void) state;
  add_target ("tgt-bad", "bad.qcow2", true);
  assert_int_equal (qmp_client_execute (
                      client, "blockdev-backup",
                      json_pack ("{s:s, s:s, s:s, s:s, s:b}", "job-id",
                                 "job-bad", "device", "disk0", "target",
                                 "tgt-bad", "sync", "full", "auto-dismiss", 0),
                      NULL),
                    0);
  assert_int_equal (qmp_client_job_wait (client, "job-bad", TIMEOUT_MS), -1);
  assert_int_equal (get_errno (), EIO);
  assert_non_null (strstr (get_error (), "job-bad"));
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_version),     cmocka_unit_test (test_query_block),
    cmocka_unit_test (test_error_class), cmocka_unit_test (test_bitmap),
    cmocka_unit_test (test_job_events),  cmocka_unit_test (test_job_failure),
  };

  return cmocka_run_group_tests (tests, setup, teardown);
}
