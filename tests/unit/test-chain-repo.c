/* SPDX-License-Identifier: Apache-2.0 */
/* test-chain-repo.c: creating, opening and refusing repositories; ids. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
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

#include "chain/internal.h"
#include "common/cleanup.h"
#include "common/error.h"

struct fixture {
  char *dir;  /* a fresh temporary directory */
  char *repo; /* dir/repo (not made) */
};

static int
setup (void **state)
{
  struct fixture *f = calloc (1, sizeof *f);
  const char *tmp = getenv ("TMPDIR");

  assert_non_null (f);
  assert_true (asprintf (&f->dir, "%s/knib-test-XXXXXX", tmp ? tmp : "/tmp")
               > 0);
  assert_non_null (mkdtemp (f->dir));
  assert_true (asprintf (&f->repo, "%s/repo", f->dir) > 0);
  *state = f;
  return 0;
}

static int
teardown (void **state)
{
  struct fixture *f = *state;

  assert_int_equal (fs_remove_tree (f->dir), 0);
  free (f->dir);
  free (f->repo);
  free (f);
  return 0;
}

static void
write_text (const char *path, const char *text)
{
  FILE *fp = fopen (path, "w");

  assert_non_null (fp);
  fputs (text, fp);
  assert_int_equal (fclose (fp), 0);
}

static char *
repo_file (const struct fixture *f)
{
  char *p;

  assert_true (asprintf (&p, "%s/" CHAIN_REPO_FILE, f->repo) > 0);
  return p;
}

static void assert_error (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2)));

static void
assert_error (const char *fmt, ...)
{
  va_list ap;
  CLEANUP_FREE char *want = NULL;

  va_start (ap, fmt);
  assert_true (vasprintf (&want, fmt, ap) > 0);
  va_end (ap);
  assert_string_equal (get_error (), want);
}

static void
test_create_new (void **state)
{
  struct fixture *f = *state;
  struct chain_repo *repo = chain_repo_open (f->repo, true);
  CLEANUP_FREE char *file = repo_file (f);
  CLEANUP_FREE char *vms = NULL;
  json_t *j;
  struct stat st;

  assert_non_null (repo);
  assert_string_equal (chain_repo_path (repo), f->repo);
  chain_repo_free (repo);

  assert_int_equal (stat (f->repo, &st), 0);
  assert_int_equal (st.st_mode & 0777, 0700);
  assert_true (asprintf (&vms, "%s/vms", f->repo) > 0);
  assert_int_equal (stat (vms, &st), 0);
  assert_int_equal (st.st_mode & 0777, 0700);
  j = json_load_file (file, 0, NULL);
  assert_non_null (j);
  assert_string_equal (json_string_value (json_object_get (j, "format")),
                       "knib-repository");
  assert_int_equal (json_integer_value (json_object_get (j, "version")), 1);
  /* A random id, which the bitmaps of its backups carry. */
  assert_int_equal (strlen (json_string_value (json_object_get (j, "id"))),
                    CHAIN_REPO_ID_LEN);
  assert_int_equal (json_object_size (j), 3);
  json_decref (j);

  /* Opening it again, with or without create, works and changes nothing. */
  repo = chain_repo_open (f->repo, false);
  assert_non_null (repo);
  chain_repo_free (repo);
  repo = chain_repo_open (f->repo, true);
  assert_non_null (repo);
  chain_repo_free (repo);
}

static void
test_create_in_empty_dir (void **state)
{
  struct fixture *f = *state;
  struct chain_repo *repo;
  CLEANUP_FREE char *slash = NULL;

  assert_int_equal (mkdir (f->repo, 0755), 0);
  assert_true (asprintf (&slash, "%s//", f->repo) > 0);
  repo = chain_repo_open (slash, true);
  assert_non_null (repo);
  assert_string_equal (chain_repo_path (repo), f->repo);
  chain_repo_free (repo);
}

/* Many runs making the same new repository at once (backups of many
 * VMs into it): one makes it, every other opens it, all with one id. */
static void
test_create_at_once (void **state)
{
  struct fixture *f = *state;
  enum { RUNS = 16, ROUNDS = 8 };

  for (int round = 0; round < ROUNDS; round++) {
    CLEANUP_FREE char *path = NULL;
    int go[2], ids[2], status;
    char buf[RUNS * CHAIN_REPO_ID_LEN];
    struct chain_repo *repo;
    size_t got = 0;

    assert_true (asprintf (&path, "%s/new%d", f->dir, round) > 0);
    assert_int_equal (pipe (go), 0);
    assert_int_equal (pipe (ids), 0);
    for (int i = 0; i < RUNS; i++) {
      pid_t pid = fork ();

      assert_true (pid != -1);
      if (pid == 0) {
        char c;

        close (go[1]);
        close (ids[0]);
        /* All start when the parent closes its end. */
        if (read (go[0], &c, 1) != 0)
          _exit (3);
        repo = chain_repo_open (path, true);
        if (repo == NULL) {
          fprintf (stderr, "run %d: %s\n", i, get_error ());
          _exit (1);
        }
        if (write (ids[1], chain_repo_id (repo), CHAIN_REPO_ID_LEN)
            != CHAIN_REPO_ID_LEN)
          _exit (2);
        chain_repo_free (repo);
        _exit (0);
      }
    }
    close (go[0]);
    close (ids[1]);
    close (go[1]);
    for (int i = 0; i < RUNS; i++) {
      assert_true (wait (&status) > 0);
      assert_true (WIFEXITED (status));
      assert_int_equal (WEXITSTATUS (status), 0);
    }
    for (;;) {
      ssize_t n = read (ids[0], buf + got, sizeof buf - got);

      assert_true (n >= 0);
      if (n == 0)
        break;
      got += (size_t) n;
    }
    close (ids[0]);
    assert_int_equal (got, sizeof buf);
    repo = chain_repo_open (path, false);
    assert_non_null (repo);
    for (int i = 0; i < RUNS; i++)
      assert_memory_equal (buf + i * CHAIN_REPO_ID_LEN, chain_repo_id (repo),
                           CHAIN_REPO_ID_LEN);
    chain_repo_free (repo);
  }
}

static void
test_open_missing (void **state)
{
  struct fixture *f = *state;

  assert_null (chain_repo_open (f->repo, false));
  assert_error ("repository '%s': No such file or directory", f->repo);
  assert_null (chain_repo_open ("", true));
  assert_string_equal (get_error (),
                       "no repository path given: Invalid argument");
}

static void
test_open_empty_dir_without_create (void **state)
{
  struct fixture *f = *state;

  assert_int_equal (mkdir (f->repo, 0700), 0);
  assert_null (chain_repo_open (f->repo, false));
  assert_error ("'%s' is not a knib repository (it has no knib-repo.json): "
                "create one first",
                f->repo);
}

/* Never write into a directory that holds something else. */
static void
test_refuse_non_empty_dir (void **state)
{
  struct fixture *f = *state;
  CLEANUP_FREE char *other = NULL;
  CLEANUP_FREE char *file = repo_file (f);
  struct stat st;

  assert_int_equal (mkdir (f->repo, 0755), 0);
  assert_true (asprintf (&other, "%s/photos.jpg", f->repo) > 0);
  write_text (other, "not a backup");
  assert_null (chain_repo_open (f->repo, true));
  assert_error ("'%s' is not empty and is not a knib repository: knib will "
                "not write into it; choose a new or empty directory",
                f->repo);
  assert_int_equal (stat (file, &st), -1);
  assert_int_equal (stat (f->repo, &st), 0);
  assert_int_equal (st.st_mode & 0777, 0755);
}

static void
test_refuse_file (void **state)
{
  struct fixture *f = *state;

  write_text (f->repo, "x");
  assert_null (chain_repo_open (f->repo, true));
  assert_error ("repository '%s': Not a directory", f->repo);
}

static void
test_refuse_other_version (void **state)
{
  struct fixture *f = *state;
  CLEANUP_FREE char *file = repo_file (f);

  assert_int_equal (mkdir (f->repo, 0700), 0);
  write_text (file, "{\"format\": \"knib-repository\", \"version\": 2, "
                    "\"new-thing\": true}");
  assert_null (chain_repo_open (f->repo, false));
  assert_error ("repository '%s' has format version 2; this knib reads "
                "version 1",
                f->repo);
  assert_null (chain_repo_open (f->repo, true));
  assert_error ("repository '%s' has format version 2; this knib reads "
                "version 1",
                f->repo);
}

static void
test_refuse_other_format (void **state)
{
  struct fixture *f = *state;
  CLEANUP_FREE char *file = repo_file (f);

  assert_int_equal (mkdir (f->repo, 0700), 0);
  write_text (file, "{\"format\": \"borg\", \"version\": 1}");
  assert_null (chain_repo_open (f->repo, false));
  assert_error ("'%s' is not a knib repository file (no \"format\": "
                "\"knib-repository\")",
                file);
}

static void
test_refuse_corrupt (void **state)
{
  struct fixture *f = *state;
  CLEANUP_FREE char *file = repo_file (f);

  assert_int_equal (mkdir (f->repo, 0700), 0);
  write_text (file, "{\"format\": \"knib-repository\", \"version\": 1");
  assert_null (chain_repo_open (f->repo, false));
  assert_non_null (strstr (get_error (), "repository file '"));
  assert_non_null (strstr (get_error (), "': invalid JSON at line 1: "));

  write_text (file, "");
  assert_null (chain_repo_open (f->repo, true));
  assert_error ("repository file '%s': the file is empty", file);

  write_text (file, "[1]");
  assert_null (chain_repo_open (f->repo, true));
  assert_error ("repository file '%s': not a JSON object", file);

  write_text (file, "{\"format\": \"knib-repository\", \"version\": \"1\"}");
  assert_null (chain_repo_open (f->repo, true));
  assert_error ("repository file '%s': 'version' must be an integer", file);

  write_text (file,
              "{\"format\": \"knib-repository\", \"version\": 1, \"x\": 0}");
  assert_null (chain_repo_open (f->repo, true));
  assert_error ("repository file '%s': unknown key 'x'", file);

  write_text (file, "{\"format\": \"knib-repository\", \"version\": 1, "
                    "\"version\": 1}");
  assert_null (chain_repo_open (f->repo, true));
  assert_non_null (strstr (get_error (), "duplicate object key"));

  write_text (file, "{\"format\": \"knib-repository\", \"version\": 1, "
                    "\"id\": \"ABCDEF0123456789\"}");
  assert_null (chain_repo_open (f->repo, true));
  assert_error ("repository file '%s': 'id' must be 16 lowercase hex digits",
                file);
}

/* A repository made before ids opens as it is, and gets one (kept
 * after) when a backup asks. */
static void
test_repo_id_upgrade (void **state)
{
  struct fixture *f = *state;
  CLEANUP_FREE char *file = repo_file (f);
  struct chain_repo *repo;
  char id[CHAIN_REPO_ID_LEN + 1];
  char name[CHAIN_BITMAP_MAX];

  assert_int_equal (mkdir (f->repo, 0700), 0);
  write_text (file, "{\"format\": \"knib-repository\", \"version\": 1}");
  repo = chain_repo_open (f->repo, false);
  assert_non_null (repo);
  assert_string_equal (chain_repo_id (repo), "");
  chain_bitmap_name (repo, "20261123T203015Z", name);
  assert_string_equal (name, "knib-20261123T203015Z");
  assert_true (chain_bitmap_is_ours (repo, "web01", "knib-20261123T203015Z"));
  assert_false (chain_bitmap_is_ours (
    repo, "web01", "knib-0123456789abcdef-20261123T203015Z"));
  assert_int_equal (chain_repo_ensure_id (repo), 0);
  assert_int_equal (strlen (chain_repo_id (repo)), CHAIN_REPO_ID_LEN);
  snprintf (id, sizeof id, "%s", chain_repo_id (repo));
  chain_bitmap_name (repo, "20261123T203015Z", name);
  assert_int_equal (strncmp (name + 5, id, CHAIN_REPO_ID_LEN), 0);
  assert_true (chain_bitmap_is_ours (repo, "web01", name));
  /* An old name is ours only for a backup the repository holds. */
  assert_false (chain_bitmap_is_ours (repo, "web01", "knib-20261123T203015Z"));
  assert_false (chain_bitmap_is_ours (repo, "web01", "other-bitmap"));
  chain_repo_free (repo);
  repo = chain_repo_open (f->repo, false);
  assert_non_null (repo);
  assert_string_equal (chain_repo_id (repo), id);
  assert_int_equal (chain_repo_ensure_id (repo), 0);
  assert_string_equal (chain_repo_id (repo), id);
  chain_repo_free (repo);
}

static mode_t
mode_of (const char *path)
{
  struct stat st;

  assert_int_equal (lstat (path, &st), 0);
  return st.st_mode & 07777;
}

/* Sharing with a group and making private again: recorded in
 * knib-repo.json (the id kept), applied to the files (that one too). */
static void
test_share (void **state)
{
  struct fixture *f = *state;
  CLEANUP_FREE char *file = repo_file (f);
  struct chain_repo *repo = chain_repo_open (f->repo, true);
  char id[CHAIN_REPO_ID_LEN + 1];

  assert_non_null (repo);
  snprintf (id, sizeof id, "%s", chain_repo_id (repo));
  assert_int_equal (strlen (id), CHAIN_REPO_ID_LEN);
  assert_int_equal (chain_repo_share (repo, "root"), 0);
  assert_string_equal (chain_repo_group (repo), "root");
  assert_string_equal (chain_repo_id (repo), id);
  assert_int_equal (mode_of (f->repo), 02750);
  assert_int_equal (mode_of (file), 0640);
  chain_repo_free (repo);
  repo = chain_repo_open (f->repo, false);
  assert_non_null (repo);
  assert_string_equal (chain_repo_group (repo), "root");
  assert_string_equal (chain_repo_id (repo), id);
  /* Again: nothing to rewrite, the modes applied all the same. */
  assert_int_equal (chmod (file, 0600), 0);
  assert_int_equal (chain_repo_share (repo, "root"), 0);
  assert_int_equal (mode_of (file), 0640);
  assert_int_equal (chain_repo_share (repo, ""), 0);
  assert_null (chain_repo_group (repo));
  assert_int_equal (mode_of (f->repo), 0700);
  assert_int_equal (mode_of (file), 0600);
  chain_repo_free (repo);
  repo = chain_repo_open (f->repo, false);
  assert_non_null (repo);
  assert_null (chain_repo_group (repo));
  assert_string_equal (chain_repo_id (repo), id);
  assert_int_equal (chain_repo_share (repo, "no such group"), -1);
  assert_error ("'no such group' is not a group name");
  chain_repo_free (repo);
}

/* knib backup --group on a repository made before ids shares it first
 * and gives it its id after: the file must stay readable between. */
static void
test_share_before_ids (void **state)
{
  struct fixture *f = *state;
  CLEANUP_FREE char *file = repo_file (f);
  struct chain_repo *repo;
  char id[CHAIN_REPO_ID_LEN + 1];

  assert_int_equal (mkdir (f->repo, 0700), 0);
  write_text (file, "{\"format\": \"knib-repository\", \"version\": 1}");
  repo = chain_repo_open (f->repo, false);
  assert_non_null (repo);
  assert_int_equal (chain_repo_share (repo, "root"), 0);
  assert_string_equal (chain_repo_id (repo), "");
  chain_repo_free (repo);
  repo = chain_repo_open (f->repo, false);
  assert_non_null (repo);
  assert_string_equal (chain_repo_id (repo), "");
  assert_string_equal (chain_repo_group (repo), "root");
  assert_int_equal (chain_repo_ensure_id (repo), 0);
  snprintf (id, sizeof id, "%s", chain_repo_id (repo));
  assert_int_equal (strlen (id), CHAIN_REPO_ID_LEN);
  chain_repo_free (repo);
  repo = chain_repo_open (f->repo, false);
  assert_non_null (repo);
  assert_string_equal (chain_repo_id (repo), id);
  assert_string_equal (chain_repo_group (repo), "root");
  chain_repo_free (repo);
}

static void
test_vm_list (void **state)
{
  struct fixture *f = *state;
  struct chain_repo *repo = chain_repo_open (f->repo, true);
  chain_string_vector vms = empty_vector;
  const char *names[] = { "web02", "db", "web01" };

  assert_non_null (repo);
  assert_int_equal (chain_vm_list (repo, &vms), 0);
  assert_int_equal (vms.len, 0);
  for (size_t i = 0; i < 3; i++) {
    CLEANUP_FREE char *p = NULL;
    assert_true (asprintf (&p, "%s/vms/%s", f->repo, names[i]) > 0);
    assert_int_equal (mkdir (p, 0700), 0);
  }
  {
    CLEANUP_FREE char *p = NULL;
    assert_true (asprintf (&p, "%s/vms/.hidden", f->repo) > 0);
    assert_int_equal (mkdir (p, 0700), 0);
  }
  assert_int_equal (chain_vm_list (repo, &vms), 0);
  assert_int_equal (vms.len, 3);
  assert_string_equal (vms.ptr[0], "db");
  assert_string_equal (vms.ptr[1], "web01");
  assert_string_equal (vms.ptr[2], "web02");
  chain_string_vector_release (&vms);
  chain_repo_free (repo);
}

static void
test_ids (void **state)
{
  char id[CHAIN_ID_MAX];
  int64_t t;
  unsigned seq;

  chain_id_make (INT64_C (1795465815), 1, id); /* 2026-11-23T20:30:15Z */
  assert_string_equal (id, "20261123T203015Z");
  chain_id_make (INT64_C (1795465815), 2, id);
  assert_string_equal (id, "20261123T203015Z-2");
  chain_id_make (INT64_C (1795465815), 9999, id);
  assert_string_equal (id, "20261123T203015Z-9999");
  assert_int_equal (chain_id_split (id, &t, &seq), 0);
  assert_int_equal (t, INT64_C (1795465815));
  assert_int_equal (seq, 9999);

  assert_true (chain_id_is_valid ("20261123T203015Z"));
  assert_true (chain_id_is_valid ("20240229T000000Z-10"));
  assert_false (chain_id_is_valid (""));
  assert_false (chain_id_is_valid ("."));
  assert_false (chain_id_is_valid ("../x"));
  assert_false (chain_id_is_valid ("a/b"));
  assert_false (chain_id_is_valid ("20261123T203015"));
  assert_false (chain_id_is_valid ("20261123T203015Z-1"));
  assert_false (chain_id_is_valid ("20261123T203015Z-02"));
  assert_false (chain_id_is_valid ("20261123T203015Z-10000"));
  assert_false (chain_id_is_valid ("20261123T203015Z-"));
  assert_false (chain_id_is_valid ("20261123T203015Z.partial"));
  assert_false (chain_id_is_valid ("20230229T000000Z"));
  assert_false (chain_id_is_valid ("20261323T000000Z"));
  assert_false (chain_id_is_valid ("20261123T246015Z"));

  /* Time first, then the suffix as a number ("-10" after "-9"). */
  assert_true (chain_id_compare ("20261123T203015Z", "20261123T203015Z-2") < 0);
  assert_true (chain_id_compare ("20261123T203015Z-9", "20261123T203015Z-10")
               < 0);
  assert_true (chain_id_compare ("20261123T203015Z-10", "20261123T203016Z")
               < 0);
  assert_int_equal (
    chain_id_compare ("20261123T203015Z-3", "20261123T203015Z-3"), 0);
}

static void
test_times (void **state)
{
  char buf[CHAIN_TIME_MAX];
  int64_t t;

  chain_time_format (INT64_C (1795465815), buf);
  assert_string_equal (buf, "2026-11-23T20:30:15Z");
  assert_int_equal (chain_time_parse ("2026-11-23T20:30:15Z", &t), 0);
  assert_int_equal (t, INT64_C (1795465815));
  assert_int_equal (chain_time_parse ("2026-11-23T20:30:15+00:00", &t), -1);
  assert_string_equal (get_error (), "'2026-11-23T20:30:15+00:00' is not a "
                                     "UTC time like 2026-11-23T20:30:15Z");
  assert_int_equal (chain_time_parse ("2026-02-30T20:30:15Z", &t), -1);
  assert_int_equal (chain_time_parse ("2026-11-23 20:30:15Z", &t), -1);
  assert_int_equal (chain_time_parse ("", &t), -1);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_create_new, setup, teardown),
    cmocka_unit_test_setup_teardown (test_create_in_empty_dir, setup, teardown),
    cmocka_unit_test_setup_teardown (test_create_at_once, setup, teardown),
    cmocka_unit_test_setup_teardown (test_open_missing, setup, teardown),
    cmocka_unit_test_setup_teardown (test_open_empty_dir_without_create, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_refuse_non_empty_dir, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_refuse_file, setup, teardown),
    cmocka_unit_test_setup_teardown (test_repo_id_upgrade, setup, teardown),
    cmocka_unit_test_setup_teardown (test_share, setup, teardown),
    cmocka_unit_test_setup_teardown (test_share_before_ids, setup, teardown),
    cmocka_unit_test_setup_teardown (test_refuse_other_version, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_refuse_other_format, setup, teardown),
    cmocka_unit_test_setup_teardown (test_refuse_corrupt, setup, teardown),
    cmocka_unit_test_setup_teardown (test_vm_list, setup, teardown),
    cmocka_unit_test (test_ids),
    cmocka_unit_test (test_times),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
