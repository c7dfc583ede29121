/* SPDX-License-Identifier: Apache-2.0 */
/* test-chain-manifest.c: manifest round trip, and every kind of corruption. */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "chain/internal.h"
#include "common/cleanup.h"
#include "common/error.h"

#define T0 INT64_C (1795465815) /* 2026-11-23T20:30:15Z */

struct fixture {
  char *dir;
  char *path; /* dir/manifest.json */
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
  assert_true (asprintf (&f->path, "%s/manifest.json", f->dir) > 0);
  *state = f;
  return 0;
}

static int
teardown (void **state)
{
  struct fixture *f = *state;

  assert_int_equal (fs_remove_tree (f->dir), 0);
  free (f->dir);
  free (f->path);
  free (f);
  return 0;
}

/* An incremental backup of two disks, one of them full. */
static struct chain_manifest *
sample (void)
{
  struct chain_manifest *m = chain_manifest_new ();
  struct chain_disk vda = {
    .name = (char *) "vda",
    .image = (char *) "vda.qcow2",
    .kind = CHAIN_KIND_INCREMENTAL,
    .virtual_size = UINT64_C (10737418240),
    .cluster_size = 65536,
    .bitmap = (char *) "knib-20261123T203215Z",
    .bytes_read = 1048576,
    .bytes_written = 524288,
    .extents = 3,
    .hash = "0123456789abcdef0123456789abcdef",
    /* As a manifest of version 1 recorded it; vdb has the segmented
     * digest, so the manifest is of version 2. */
    .hash_kind = CHAIN_HASH_WHOLE,
    .compression = CHAIN_COMPRESSION_ZSTD,
  };
  struct chain_disk vdb = vda;

  vdb.name = (char *) "vdb";
  vdb.image = (char *) "vdb.qcow2";
  vdb.kind = CHAIN_KIND_FULL;
  vdb.virtual_size = 1u << 30;
  vdb.compression = CHAIN_COMPRESSION_NONE;
  vdb.reason = (char *) "new disk";
  strcpy (vdb.hash, "ffffffffffffffffffffffffffffffff");
  vdb.hash_kind = CHAIN_HASH_SEGMENTS;

  assert_non_null (m);
  strcpy (m->id, "20261123T203215Z");
  m->vm = strdup ("web01");
  strcpy (m->parent, "20261123T203115Z");
  strcpy (m->chain, "20261123T203015Z");
  m->position = 3;
  m->kind = CHAIN_KIND_INCREMENTAL;
  m->state = CHAIN_STATE_COMPLETE;
  m->created = T0 + 120;
  m->finished = T0 + 125;
  m->reason = strdup ("backup 3 of chain 20261123T203015Z (chain size 8)");
  assert_int_equal (chain_manifest_add_disk (m, &vda), 0);
  assert_int_equal (chain_manifest_add_disk (m, &vdb), 0);
  return m;
}

static void
test_round_trip (void **state)
{
  struct fixture *f = *state;
  struct chain_manifest *m = sample (), *back;
  const struct chain_disk *a, *b;
  struct stat st;

  assert_int_equal (chain_manifest_validate (m), 0);
  assert_int_equal (chain_manifest_commit (m, f->path), 0);
  assert_int_equal (stat (f->path, &st), 0);
  assert_int_equal (st.st_mode & 0777, 0600);
  back = chain_manifest_load (f->path);
  assert_non_null (back);
  assert_string_equal (back->id, m->id);
  assert_string_equal (back->vm, m->vm);
  assert_string_equal (back->parent, m->parent);
  assert_string_equal (back->chain, m->chain);
  assert_int_equal (back->position, 3);
  assert_int_equal (back->kind, CHAIN_KIND_INCREMENTAL);
  assert_int_equal (back->state, CHAIN_STATE_COMPLETE);
  assert_int_equal (back->created, T0 + 120);
  assert_int_equal (back->finished, T0 + 125);
  assert_string_equal (back->reason, m->reason);
  assert_int_equal (back->disks.len, 2);
  for (size_t i = 0; i < 2; i++) {
    a = &m->disks.ptr[i];
    b = &back->disks.ptr[i];
    assert_string_equal (a->name, b->name);
    assert_string_equal (a->image, b->image);
    assert_int_equal (a->kind, b->kind);
    assert_int_equal (a->virtual_size, b->virtual_size);
    assert_int_equal (a->cluster_size, b->cluster_size);
    assert_string_equal (a->bitmap, b->bitmap);
    assert_int_equal (a->bytes_read, b->bytes_read);
    assert_int_equal (a->bytes_written, b->bytes_written);
    assert_int_equal (a->extents, b->extents);
    assert_string_equal (a->hash, b->hash);
    assert_int_equal (a->compression, b->compression);
    if (a->reason)
      assert_string_equal (a->reason, b->reason);
    else
      assert_null (b->reason);
  }
  assert_non_null (chain_manifest_find_disk (back, "vdb"));
  assert_null (chain_manifest_find_disk (back, "vdc"));
  chain_manifest_free (back);
  chain_manifest_free (m);
}

/* The file is what the JSON says it is (the contract with other tools). */
static void
test_json_shape (void **state)
{
  struct fixture *f = *state;
  struct chain_manifest *m = sample ();
  json_t *j, *d;

  m->kind = CHAIN_KIND_FULL;
  m->parent[0] = '\0';
  strcpy (m->chain, m->id);
  m->position = 1;
  m->disks.ptr[0].kind = CHAIN_KIND_FULL;
  assert_int_equal (chain_manifest_commit (m, f->path), 0);
  j = json_load_file (f->path, 0, NULL);
  assert_non_null (j);
  assert_true (json_is_null (json_object_get (j, "parent")));
  assert_string_equal (json_string_value (json_object_get (j, "kind")), "full");
  assert_string_equal (json_string_value (json_object_get (j, "created")),
                       "2026-11-23T20:32:15Z");
  d = json_array_get (json_object_get (j, "disks"), 0);
  assert_string_equal (json_string_value (json_object_get (d, "xxh3-128")),
                       "0123456789abcdef0123456789abcdef");
  assert_null (json_object_get (d, "xxh3-128-segments"));
  assert_int_equal (json_integer_value (json_object_get (j, "version")), 2);
  d = json_array_get (json_object_get (j, "disks"), 1);
  assert_string_equal (
    json_string_value (json_object_get (d, "xxh3-128-segments")),
    "ffffffffffffffffffffffffffffffff");
  assert_null (json_object_get (d, "xxh3-128"));
  d = json_array_get (json_object_get (j, "disks"), 0);
  assert_string_equal (json_string_value (json_object_get (d, "compression")),
                       "zstd");
  assert_int_equal (json_integer_value (json_object_get (d, "virtual-size")),
                    INT64_C (10737418240));
  assert_true (json_is_null (json_object_get (d, "reason")));
  json_decref (j);
  chain_manifest_free (m);
}

/* Replacing a manifest leaves no temporary file behind; an invalid one
 * is never written. */
static void
test_commit_is_atomic (void **state)
{
  struct fixture *f = *state;
  struct chain_manifest *m = sample (), *back;
  DIR *d;
  struct dirent *e;
  int n = 0;

  assert_int_equal (chain_manifest_commit (m, f->path), 0);
  m->state = CHAIN_STATE_REMOVED;
  assert_int_equal (chain_manifest_commit (m, f->path), 0);
  m->position = 1; /* invalid for an incremental */
  assert_int_equal (chain_manifest_commit (m, f->path), -1);
  assert_non_null (strstr (get_error (), "will not write an invalid manifest"));
  back = chain_manifest_load (f->path);
  assert_non_null (back);
  assert_int_equal (back->state, CHAIN_STATE_REMOVED);
  assert_int_equal (back->position, 3);
  chain_manifest_free (back);
  d = opendir (f->dir);
  while ((e = readdir (d)) != NULL)
    if (e->d_name[0] != '.')
      n++;
    else
      assert_false (chain_is_temp_name (e->d_name));
  closedir (d);
  assert_int_equal (n, 1);
  chain_manifest_free (m);
}

/* One corruption: set (or with value NULL delete) the member at path
 * ("key" or "disks.N.key") of a good manifest, and the error expected. */
struct corruption {
  const char *path;
  const char *value; /* JSON text */
  const char *error; /* after "manifest 'PATH': " */
};

static const struct corruption corruptions[] = {
  { "position", NULL, "'position' is missing" },
  { "disks", NULL, "'disks' is missing" },
  { "extra", "1", "unknown key 'extra'" },
  { "position", "\"3\"", "'position' must be a positive integer" },
  { "position", "0", "'position' must be a positive integer" },
  { "position", "2.5", "'position' must be a positive integer" },
  { "position", "1",
    "the 'position' of an incremental backup is at least 2, not 1" },
  { "id", "\"../x\"", "'id' is not a backup id: '../x'" },
  { "id", "\"20261123T203215Z/x\"",
    "'id' is not a backup id: '20261123T203215Z/x'" },
  { "id", "null", "'id' must be a string" },
  { "vm", "\"a/b\"",
    "invalid vm name 'a/b': only letters, digits and ._+:@- are allowed" },
  { "vm", "\"\"", "invalid vm name '': it is empty" },
  { "parent", "\"../x\"", "'parent' is not a backup id: '../x'" },
  { "parent", "5", "'parent' must be a string or null" },
  { "parent", "null", "an incremental backup needs a 'parent'" },
  { "parent", "\"20261123T203315Z\"",
    "'parent' 20261123T203315Z does not sort before the backup "
    "20261123T203215Z" },
  { "chain", "\"20261123T203116Z\"",
    "'chain' 20261123T203116Z sorts after 'parent' 20261123T203115Z" },
  { "kind", "\"differential\"",
    "'kind' must be full, incremental or isolated, not 'differential'" },
  { "kind", "\"full\"",
    "a full backup has no parent, but 'parent' is '20261123T203115Z'" },
  { "state", "\"gone\"", "'state' must be complete or removed, not 'gone'" },
  { "created", "\"yesterday\"",
    "'created': 'yesterday' is not a UTC time like 2026-11-23T20:30:15Z" },
  { "finished", "\"2026-11-23T20:32:14Z\"", "'finished' is before 'created'" },
  { "reason", "null", "'reason' must be a string" },
  { "disks", "{}", "'disks' must be an array" },
  { "disks", "[]", "'disks' is empty" },
  { "disks.0", "7", "disk 1: not a JSON object" },
  { "disks.0.image", "\"x/y\"",
    "disk 'vda': invalid image name 'x/y': only letters, digits and ._+:@- "
    "are allowed" },
  { "disks.0.image", "\"..\"",
    "disk 'vda': invalid image name '..': it may not start with '.' or '-'" },
  { "disks.0.image", "\"manifest.json\"",
    "disk 'vda': image 'manifest.json' is the manifest's name" },
  { "disks.1.image", "\"vda.qcow2\"",
    "disks 'vda' and 'vdb' have the same image 'vda.qcow2'" },
  { "disks.0.name", "\"../etc\"",
    "disk 1: invalid disk name '../etc': it may not start with '.' or '-'" },
  { "disks.1.name", "\"vda\"", "disk 'vda' is listed twice" },
  { "disks.0.virtual-size", "-1",
    "disk 'vda': 'virtual-size' must be a non-negative integer" },
  { "disks.0.bytes-read", "\"many\"",
    "disk 'vda': 'bytes-read' must be a non-negative integer" },
  { "disks.0.cluster-size", "1000",
    "disk 'vda': 'cluster-size' must be a power of two from 512 to 2097152, "
    "not 1000" },
  { "disks.0.xxh3-128", "\"XYZ\"",
    "disk 'vda': 'xxh3-128' must be 32 lowercase hex digits" },
  { "disks.0.xxh3-128", "\"0123456789ABCDEF0123456789ABCDEF\"",
    "disk 'vda': 'xxh3-128' must be 32 lowercase hex digits" },
  { "disks.1.xxh3-128-segments", "\"XYZ\"",
    "disk 'vdb': 'xxh3-128-segments' must be 32 lowercase hex digits" },
  { "disks.1.xxh3-128", "\"0123456789abcdef0123456789abcdef\"",
    "disk 'vdb': has both 'xxh3-128' and 'xxh3-128-segments'" },
  { "disks.0.xxh3-128", NULL, "disk 'vda': 'xxh3-128' is missing" },
  { "version", NULL,
    "disk 'vdb': 'xxh3-128-segments' needs manifest version 2" },
  { "version", "1", "'version' must be an integer from 2 to 2" },
  { "version", "\"2\"", "'version' must be an integer from 2 to 2" },
  { "version", "3",
    "the manifest has version 3, this knib reads versions up to 2: use a "
    "newer knib" },
  { "disks.0.compression", "\"lz4\"",
    "disk 'vda': 'compression': unknown compression 'lz4' (known: none, "
    "zlib, zstd)" },
  { "disks.0.kind", "\"isolated\"",
    "disk 'vda': 'kind' must be full or incremental, not 'isolated'" },
  { "disks.0.bitmap", "\"\"", "disk 'vda': 'bitmap' must be a bitmap name" },
  { "disks.0.reason", "[]", "disk 'vda': 'reason' must be a string or null" },
  { "disks.0.foo", "1", "disk 'vda': unknown key 'foo'" },
  { "disks.0.extents", NULL, "disk 'vda': 'extents' is missing" },
};

static void
apply (json_t *j, const struct corruption *c)
{
  char path[128];
  char *key = path, *dot;
  json_t *target = j;

  snprintf (path, sizeof path, "%s", c->path);
  while ((dot = strchr (key, '.')) != NULL) {
    *dot = '\0';
    target = json_is_array (target)
               ? json_array_get (target, strtoul (key, NULL, 10))
               : json_object_get (target, key);
    assert_non_null (target);
    key = dot + 1;
  }
  if (json_is_array (target)) {
    json_t *v = json_loads (c->value, JSON_DECODE_ANY, NULL);
    assert_non_null (v);
    assert_int_equal (json_array_set_new (target, strtoul (key, NULL, 10), v),
                      0);
  }
  else if (c->value == NULL)
    assert_int_equal (json_object_del (target, key), 0);
  else {
    json_t *v = json_loads (c->value, JSON_DECODE_ANY, NULL);
    assert_non_null (v);
    assert_int_equal (json_object_set_new (target, key, v), 0);
  }
}

static void
test_corruptions (void **state)
{
  struct fixture *f = *state;
  struct chain_manifest *m = sample ();
  json_t *good = chain_manifest_to_json (m);

  assert_non_null (good);
  for (size_t i = 0; i < sizeof corruptions / sizeof corruptions[0]; i++) {
    const struct corruption *c = &corruptions[i];
    json_t *bad = json_deep_copy (good);
    CLEANUP_FREE char *want = NULL;

    apply (bad, c);
    assert_int_equal (json_dump_file (bad, f->path, 0), 0);
    json_decref (bad);
    assert_null (chain_manifest_load (f->path));
    assert_int_equal (errno, EINVAL);
    assert_true (asprintf (&want, "manifest '%s': %s", f->path, c->error) > 0);
    if (strcmp (get_error (), want) != 0)
      fail_msg ("corruption %zu (%s): got \"%s\", wanted \"%s\"", i, c->path,
                get_error (), want);
  }
  json_decref (good);
  chain_manifest_free (m);
}

/* A manifest whose disks all have the whole file's hash is written as
 * version 1 (no "version"): what an older knib wrote, and can read. */
static void
test_version_1 (void **state)
{
  struct fixture *f = *state;
  struct chain_manifest *m = sample (), *back;
  json_t *j;

  m->disks.ptr[1].hash_kind = CHAIN_HASH_WHOLE;
  assert_int_equal (chain_manifest_commit (m, f->path), 0);
  j = json_load_file (f->path, 0, NULL);
  assert_non_null (j);
  assert_null (json_object_get (j, "version"));
  json_decref (j);
  back = chain_manifest_load (f->path);
  assert_non_null (back);
  assert_int_equal (back->disks.ptr[0].hash_kind, CHAIN_HASH_WHOLE);
  assert_int_equal (back->disks.ptr[1].hash_kind, CHAIN_HASH_WHOLE);
  assert_string_equal (back->disks.ptr[1].hash,
                       "ffffffffffffffffffffffffffffffff");
  chain_manifest_free (back);
  chain_manifest_free (m);
}

static void
write_text (const char *path, const char *text)
{
  FILE *fp = fopen (path, "w");

  assert_non_null (fp);
  fputs (text, fp);
  assert_int_equal (fclose (fp), 0);
}

static void
test_not_json (void **state)
{
  struct fixture *f = *state;
  CLEANUP_FREE char *want = NULL;

  write_text (f->path, "{\"id\": ");
  assert_null (chain_manifest_load (f->path));
  assert_true (
    asprintf (&want, "manifest '%s': invalid JSON at line 1: ", f->path) > 0);
  assert_memory_equal (get_error (), want, strlen (want));

  write_text (f->path, "");
  assert_null (chain_manifest_load (f->path));
  assert_non_null (strstr (get_error (), "': the file is empty"));

  write_text (f->path, "[]");
  assert_null (chain_manifest_load (f->path));
  assert_non_null (strstr (get_error (), "': not a JSON object"));

  write_text (f->path, "{\"id\": \"a\", \"id\": \"b\"}");
  assert_null (chain_manifest_load (f->path));
  assert_non_null (strstr (get_error (), "duplicate object key"));

  unlink (f->path);
  assert_null (chain_manifest_load (f->path));
  assert_int_equal (errno, ENOENT);
  free (want);
  assert_true (asprintf (&want,
                         "manifest '%s': cannot open: No such file or "
                         "directory",
                         f->path)
               > 0);
  assert_string_equal (get_error (), want);
}

/* Rules for full and isolated backups, checked before anything is saved. */
static void
test_validate_kinds (void **state)
{
  struct chain_manifest *m = sample ();

  m->kind = CHAIN_KIND_ISOLATED;
  m->parent[0] = '\0';
  m->position = 1;
  assert_int_equal (chain_manifest_validate (m), -1);
  assert_string_equal (get_error (), "the 'chain' of an isolated backup is its "
                                     "own id, not '20261123T203015Z'");
  strcpy (m->chain, m->id);
  assert_int_equal (chain_manifest_validate (m), -1);
  assert_string_equal (get_error (),
                       "disk 'vda': is incremental in an isolated backup");
  m->disks.ptr[0].kind = CHAIN_KIND_FULL;
  assert_int_equal (chain_manifest_validate (m), 0);
  m->position = 2;
  assert_int_equal (chain_manifest_validate (m), -1);
  assert_string_equal (get_error (),
                       "the 'position' of an isolated backup is 1, not 2");
  chain_manifest_free (m);
}

/* A validation's result: an optional member that round-trips; a wrong
 * one is refused; a manifest without one reads as never validated. */
static void
test_validation (void **state)
{
  struct fixture *f = *state;
  struct chain_manifest *m = sample (), *back;
  struct chain_validation *v = calloc (1, sizeof *v);
  struct chain_validation_step boot = { .name = strdup ("boot"),
                                        .status = CHAIN_CHECK_PASSED,
                                        .seconds = 17.25,
                                        .message = strdup ("answered") };
  struct chain_validation_step cmd = { .name = strdup ("command"),
                                       .status = CHAIN_CHECK_FAILED,
                                       .seconds = 0.5,
                                       .message = NULL };
  json_t *j;

  assert_int_equal (chain_manifest_commit (m, f->path), 0);
  back = chain_manifest_load (f->path);
  assert_non_null (back);
  assert_null (back->validation);
  chain_manifest_free (back);

  assert_non_null (v);
  v->status = CHAIN_CHECK_FAILED;
  v->time = T0 + 600;
  v->seconds = 20.5;
  v->boot_seconds = 17.25;
  v->accel = strdup ("tcg");
  v->screenshot = strdup ("validation/screen.png");
  assert_int_equal (chain_validation_step_vector_append (&v->steps, boot), 0);
  assert_int_equal (chain_validation_step_vector_append (&v->steps, cmd), 0);
  m->validation = v;
  assert_int_equal (chain_manifest_commit (m, f->path), 0);
  back = chain_manifest_load (f->path);
  assert_non_null (back);
  assert_non_null (back->validation);
  assert_int_equal (back->validation->status, CHAIN_CHECK_FAILED);
  assert_int_equal (back->validation->time, T0 + 600);
  assert_true (back->validation->boot_seconds == 17.25);
  assert_string_equal (back->validation->accel, "tcg");
  assert_string_equal (back->validation->screenshot, "validation/screen.png");
  assert_null (back->validation->console);
  assert_int_equal (back->validation->steps.len, 2);
  assert_string_equal (back->validation->steps.ptr[0].message, "answered");
  assert_null (back->validation->steps.ptr[1].message);
  assert_int_equal (back->validation->steps.ptr[1].status, CHAIN_CHECK_FAILED);
  chain_manifest_free (back);

  /* Never answered: boot-seconds is null. */
  v->boot_seconds = -1;
  assert_int_equal (chain_manifest_commit (m, f->path), 0);
  back = chain_manifest_load (f->path);
  assert_non_null (back);
  assert_true (back->validation->boot_seconds < 0);
  chain_manifest_free (back);

  /* A file outside the validation's directory is refused. */
  free (v->screenshot);
  v->screenshot = strdup ("../../../etc/passwd");
  assert_int_equal (chain_manifest_validate (m), -1);
  assert_non_null (strstr (get_error (), "its files must be in"));
  free (v->screenshot);
  v->screenshot = NULL;

  /* Unknown members and wrong types are errors. */
  j = chain_manifest_to_json (m);
  assert_non_null (j);
  json_object_set_new (json_object_get (j, "validation"), "extra",
                       json_true ());
  back = chain_manifest_from_json (j);
  assert_null (back);
  assert_non_null (strstr (get_error (), "extra"));
  json_object_del (json_object_get (j, "validation"), "extra");
  json_object_set_new (json_object_get (j, "validation"), "status",
                       json_string ("maybe"));
  back = chain_manifest_from_json (j);
  assert_null (back);
  assert_non_null (strstr (get_error (), "'status' must be passed"));
  json_decref (j);
  chain_manifest_free (m);
}

int
main (void)
{
#define T(fn) cmocka_unit_test_setup_teardown (fn, setup, teardown)
  const struct CMUnitTest tests[] = {
    T (test_round_trip),     T (test_json_shape), T (test_commit_is_atomic),
    T (test_corruptions),    T (test_version_1),  T (test_not_json),
    T (test_validate_kinds), T (test_validation),
  };
#undef T

  return cmocka_run_group_tests (tests, NULL, NULL);
}
