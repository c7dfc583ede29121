/* SPDX-License-Identifier: Apache-2.0 */
/* fs.c: a backup's filesystems, the guest's own tree, and resolving paths. */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/debug.h"
#include "common/error.h"
#include "internal.h"

/* The disk whose appliance device is dev or holds partition dev. */
static const char *
disk_of_device (struct files_session *s, const char *dev)
{
  for (size_t i = 0; i < s->devices.len; i++) {
    size_t n = strlen (s->devices.ptr[i]);

    if (strncmp (dev, s->devices.ptr[i], n) == 0
        && (dev[n] == '\0' || (dev[n] >= '0' && dev[n] <= '9')))
      return s->disks.ptr[i];
  }
  return NULL;
}

/* LVM uuids: a PV's 32 characters against a VG's list entry, which has
 * dashes. */
static bool
same_uuid (const char *pv, const char *dashed)
{
  size_t n = 0;

  for (; *dashed != '\0' && n < 32; dashed++)
    if (*dashed != '-'
        && tolower ((unsigned char) *dashed)
             != tolower ((unsigned char) pv[n++]))
      return false;
  return n == 32 && *dashed == '\0';
}

/* An LVM volume's disk: the one disk that holds every PV of its group
 * (NULL when they are spread over several). */
static const char *
disk_of_lv (struct files_session *s, const char *lv)
{
  CLEANUP_FREE char *vg = NULL;
  struct guestfs_lvm_pv_list *pvs = NULL;
  char **uuids = NULL;
  const char *disk = NULL;
  bool several = false;

  vg = guestfs_lvm_canonical_lv_name (s->g, lv);
  if (vg == NULL || strncmp (vg, "/dev/", 5) != 0)
    return NULL;
  memmove (vg, vg + 5, strlen (vg + 5) + 1);
  if (strchr (vg, '/') != NULL)
    *strchr (vg, '/') = '\0';
  uuids = guestfs_vgpvuuids (s->g, vg);
  pvs = guestfs_pvs_full (s->g);
  for (size_t i = 0; uuids != NULL && pvs != NULL && uuids[i] != NULL; i++)
    for (size_t j = 0; j < pvs->len; j++) {
      const char *d;

      if (!same_uuid (pvs->val[j].pv_uuid, uuids[i]))
        continue;
      d = disk_of_device (s, pvs->val[j].pv_name);
      if (disk != NULL && d != NULL && strcmp (d, disk) != 0)
        several = true;
      if (disk == NULL)
        disk = d;
    }
  files_free_strings (uuids);
  if (pvs != NULL)
    guestfs_free_lvm_pv_list (pvs);
  return several ? NULL : disk;
}

/* Inspect once: is there one operating system, and where does it
 * mount what. */
static void
inspect (struct files_session *s)
{
  char **roots;

  if (s->inspected != 0)
    return;
  s->inspected = -1;
  roots = guestfs_inspect_os (s->g);
  if (roots != NULL && roots[0] != NULL && roots[1] == NULL) {
    s->os_root = strdup (roots[0]);
    if (s->os_root != NULL)
      s->inspected = 1;
  }
  debug (DEBUG_CHAIN, "files: inspection: %s",
         s->inspected == 1 ? s->os_root : "no single operating system");
  files_free_strings (roots);
}

/* Append fs (its strings filled, disk only when has_disk) to v, which
 * takes them; on failure they are freed. */
static int
fs_push (files_fs_vector *v, struct files_fs *fs, bool has_disk)
{
  if ((has_disk && !fs->disk) || !fs->device || !fs->type || !fs->label
      || !fs->uuid || !fs->mountpoint
      || files_fs_vector_append (v, *fs) == -1) {
    files_fs_release (fs);
    set_error (ENOMEM, "filesystem");
    return -1;
  }
  return 0;
}

static char *
dup_or_empty (char *s)
{
  return s != NULL ? s : strdup ("");
}

static int
add_fs (struct files_session *s, const char *dev, const char *type, char **mps)
{
  struct files_fs fs = { NULL };
  const char *disk;

  if (s->disks.len == 1)
    disk = s->disks.ptr[0];
  else if (strncmp (dev, "/dev/sd", 7) == 0 || strncmp (dev, "/dev/vd", 7) == 0)
    disk = disk_of_device (s, dev);
  else
    disk = disk_of_lv (s, dev);
  fs.disk = disk ? strdup (disk) : NULL;
  fs.device = strdup (dev);
  fs.type = strdup (type);
  fs.label = dup_or_empty (guestfs_vfs_label (s->g, dev));
  fs.uuid = dup_or_empty (guestfs_vfs_uuid (s->g, dev));
  fs.mountpoint = NULL;
  for (size_t i = 0; mps != NULL && mps[i] != NULL; i += 2)
    if (strcmp (mps[i + 1], dev) == 0)
      fs.mountpoint = strdup (mps[i]);
  fs.mountpoint = dup_or_empty (fs.mountpoint);
  return fs_push (&s->fs, &fs, disk != NULL);
}

/* "no partition table, no filesystem" and the like, for a disk where
 * libguestfs found no filesystem. */
static char *
describe_disk (struct files_session *s, size_t i)
{
  const char *dev = s->devices.ptr[i];
  CLEANUP_FREE char *table = guestfs_part_get_parttype (s->g, dev);
  CLEANUP_FREE char *type = NULL;
  char *out = NULL;
  int n = 0;

  if (table != NULL) {
    struct guestfs_partition_list *parts = guestfs_part_list (s->g, dev);

    n = parts ? (int) parts->len : 0;
    if (parts)
      guestfs_free_partition_list (parts);
    if (asprintf (&out,
                  "disk '%s': %s partition table with %d partition%s, "
                  "no filesystem libguestfs can read",
                  s->disks.ptr[i], table, n, n == 1 ? "" : "s")
        == -1)
      out = NULL;
    return out;
  }
  type = guestfs_vfs_type (s->g, dev);
  if (asprintf (&out, "disk '%s': no partition table, %s", s->disks.ptr[i],
                type && type[0] ? "a filesystem libguestfs cannot read"
                                : "no filesystem")
      == -1)
    out = NULL;
  return out;
}

static int
no_filesystem_error (struct files_session *s)
{
  CLEANUP_FREE char *msg = NULL;

  for (size_t i = 0; i < s->disks.len; i++) {
    CLEANUP_FREE char *d = describe_disk (s, i);
    char *next;

    if (asprintf (&next, "%s%s%s", msg ? msg : "", msg ? "; " : "", d ? d : "?")
        == -1) {
      set_error (ENOMEM, "message");
      return -1;
    }
    free (msg);
    msg = next;
  }
  set_error (-ENOENT, "no filesystem in backup '%s': %s",
             files_session_manifest (s)->id, msg);
  return -1;
}

/* The filesystems (once); with inspect, also where the guest mounts
 * them (inspection reads every filesystem: only when needed). */
static int
load_filesystems (struct files_session *s, bool with_inspection)
{
  char **list, **mps = NULL;
  int r = 0;

  if (s->fs_done)
    return 0;
  list = guestfs_list_filesystems (s->g);
  if (list == NULL) {
    files_guestfs_error (s->g, "list filesystems");
    return -1;
  }
  if (with_inspection)
    inspect (s);
  if (s->inspected == 1)
    mps = guestfs_inspect_get_mountpoints (s->g, s->os_root);
  for (size_t i = 0; r == 0 && list[i] != NULL; i += 2)
    if (strcmp (list[i + 1], "unknown") != 0
        && strcmp (list[i + 1], "swap") != 0 && strcmp (list[i + 1], "") != 0)
      r = add_fs (s, list[i], list[i + 1], mps);
  files_free_strings (list);
  files_free_strings (mps);
  if (r == -1)
    return -1;
  s->fs_done = true;
  if (s->fs.len == 0)
    return no_filesystem_error (s);
  return 0;
}

int
files_session_filesystems (struct files_session *s, files_fs_vector *out)
{
  if (load_filesystems (s, true) == -1)
    return -1;
  for (size_t i = 0; i < s->fs.len; i++) {
    const struct files_fs *f = &s->fs.ptr[i];
    struct files_fs c = { NULL };

    c.disk = f->disk ? strdup (f->disk) : NULL;
    c.device = strdup (f->device);
    c.type = strdup (f->type);
    c.label = strdup (f->label);
    c.uuid = strdup (f->uuid);
    c.mountpoint = strdup (f->mountpoint);
    if (fs_push (out, &c, f->disk != NULL) == -1)
      return -1;
  }
  return 0;
}

static const struct files_fs *
find_fs (struct files_session *s, const char *dev)
{
  for (size_t i = 0; i < s->fs.len; i++)
    if (strcmp (s->fs.ptr[i].device, dev) == 0)
      return &s->fs.ptr[i];
  return NULL;
}

static int
push_mount (struct files_session *s, const char *dev, const char *dir)
{
  struct files_mount m = { dev ? strdup (dev) : NULL, strdup (dir) };

  if ((dev && !m.device) || !m.dir
      || files_mount_vector_append (&s->mounts, m) == -1) {
    free (m.device);
    free (m.dir);
    set_error (ENOMEM, "mount");
    return -1;
  }
  return 0;
}

/* The Debian package that lets libguestfs's appliance read a type of
 * filesystem (the appliance is built from the host's packages). */
static const struct {
  const char *type;
  const char *package;
} fs_packages[] = {
  { "xfs", "libguestfs-xfs" },           { "jfs", "libguestfs-jfs" },
  { "reiserfs", "libguestfs-reiserfs" }, { "nilfs2", "libguestfs-nilfs" },
  { "hfsplus", "libguestfs-hfsplus" },   { "gfs2", "libguestfs-gfs2" },
  { "zfs_member", "libguestfs-zfs" },    { "ntfs", "ntfs-3g" },
};

/* After a mount of dev failed: when the appliance has no support for
 * its type at all, say which package gives it (replacing the mount's
 * own error); else leave that error. */
static void
explain_unsupported (struct files_session *s, const char *dev)
{
  CLEANUP_FREE char *type = guestfs_vfs_type (s->g, dev);
  const char *package = NULL;
  struct error_saved saved;
  struct guestfs_utsname *u;
  bool cloud;
  int avail;

  if (type == NULL || type[0] == '\0')
    return;
  error_save (&saved);
  avail = guestfs_filesystem_available (s->g, type);
  error_restore (&saved);
  if (avail != 0)
    return;
  for (size_t i = 0; i < sizeof fs_packages / sizeof fs_packages[0]; i++)
    if (strcmp (fs_packages[i].type, type) == 0)
      package = fs_packages[i].package;
  /* Debian's cloud kernels leave many filesystems out; the appliance
   * boots a kernel of the host's /boot, which may not be the running
   * one. */
  error_save (&saved);
  u = guestfs_utsname (s->g);
  error_restore (&saved);
  cloud = u != NULL && strstr (u->uts_release, "-cloud-") != NULL;
  if (u != NULL)
    guestfs_free_utsname (u);
  if (package != NULL)
    set_error (-ENOTSUP,
               "cannot mount %s: libguestfs's appliance cannot read %s "
               "filesystems: install the package %s%s%s%s",
               dev, type, package, cloud ? " and a kernel with " : "",
               cloud ? type : "", cloud ? " (linux-image-amd64)" : "");
  else
    set_error (-ENOTSUP,
               "cannot mount %s: libguestfs's appliance cannot read %s "
               "filesystems: its kernel has no %s driver: install %s",
               dev, type, type,
               cloud ? "the package linux-image-amd64 (Debian's cloud "
                       "kernel leaves it out)"
                     : "a kernel package that has it");
}

/* Mount filesystem dev read-only at its own directory (once). */
static const char *
mount_fs (struct files_session *s, const char *dev)
{
  char dir[256];

  for (size_t i = 0; i < s->mounts.len; i++)
    if (s->mounts.ptr[i].device && strcmp (s->mounts.ptr[i].device, dev) == 0)
      return s->mounts.ptr[i].dir;
  /* "/dev/sda1" at "/sda1", "/dev/vg0/lv0" at "/vg0-lv0": the names
   * "knib files mount" shows. */
  snprintf (dir, sizeof dir, "/%s",
            strncmp (dev, "/dev/", 5) == 0 ? dev + 5 : dev + 1);
  for (char *c = dir + 1; *c != '\0'; c++)
    if (*c == '/')
      *c = '-';
  if (guestfs_mkmountpoint (s->g, dir) == -1) {
    files_guestfs_error (s->g, dev);
    error_prepend ("cannot mount");
    return NULL;
  }
  if (guestfs_mount_ro (s->g, dev, dir) == -1) {
    files_guestfs_error (s->g, dev);
    error_prepend ("cannot mount");
    explain_unsupported (s, dev);
    guestfs_rmmountpoint (s->g, dir);
    return NULL;
  }
  debug (DEBUG_CHAIN, "files: %s mounted read-only", dev);
  if (push_mount (s, dev, dir) == -1)
    return NULL;
  return s->mounts.ptr[s->mounts.len - 1].dir;
}

static int
compare_mountpoints (const void *a, const void *b)
{
  const char *const *x = a, *const *y = b;
  size_t lx = strlen (x[0]), ly = strlen (y[0]);

  return lx < ly ? -1 : lx > ly;
}

/* Mount the guest's tree as its fstab says (once). */
static const char *
mount_guest (struct files_session *s)
{
  static const char dir[] = "/guest";
  char **mps;
  size_t n = 0;
  int r = 0;

  for (size_t i = 0; i < s->mounts.len; i++)
    if (s->mounts.ptr[i].device == NULL)
      return s->mounts.ptr[i].dir;
  mps = guestfs_inspect_get_mountpoints (s->g, s->os_root);
  if (mps == NULL) {
    files_guestfs_error (s->g, "inspection");
    return NULL;
  }
  while (mps[n] != NULL)
    n += 2;
  qsort (mps, n / 2, 2 * sizeof (char *), compare_mountpoints);
  if (guestfs_mkmountpoint (s->g, dir) == -1) {
    files_guestfs_error (s->g, dir);
    r = -1;
  }
  for (size_t i = 0; r == 0 && i < n; i += 2) {
    CLEANUP_FREE char *at = files_join (dir, mps[i]);

    if (at == NULL)
      r = -1;
    else if (guestfs_mount_ro (s->g, mps[i + 1], at) == -1) {
      if (strcmp (mps[i], "/") == 0) {
        files_guestfs_error (s->g, mps[i + 1]);
        error_prepend ("cannot mount the guest's root");
        r = -1;
      }
      else
        debug (DEBUG_CHAIN, "files: %s on %s not mounted: %s", mps[i + 1],
               mps[i], guestfs_last_error (s->g));
    }
  }
  files_free_strings (mps);
  if (r == -1 || push_mount (s, NULL, dir) == -1)
    return NULL;
  return dir;
}

char *
files_normalise (const char *path)
{
  size_t n = strlen (path);
  char *out = malloc (n + 2);
  size_t len = 0;
  const char *p = path;

  if (out == NULL) {
    set_error (ENOMEM, "path");
    return NULL;
  }
  while (*p != '\0') {
    const char *e;
    size_t c;

    while (*p == '/')
      p++;
    e = strchrnul (p, '/');
    c = (size_t) (e - p);
    if (c == 0 || (c == 1 && p[0] == '.'))
      ;
    else if (c == 2 && p[0] == '.' && p[1] == '.') {
      while (len > 0 && out[len - 1] != '/')
        len--;
      if (len > 0)
        len--;
    }
    else {
      out[len++] = '/';
      memcpy (out + len, p, c);
      len += c;
    }
    p = e;
  }
  if (len == 0)
    out[len++] = '/';
  out[len] = '\0';
  return out;
}

static int
resolve_fs (struct files_session *s, const char *disk, const char *dev,
            const char *path, struct files_path *out)
{
  const struct files_fs *fs = find_fs (s, dev);
  const char *root;

  if (fs == NULL) {
    set_error (ENOENT,
               "no filesystem '%s' in backup '%s' ('knib files ls' "
               "without a path lists them)",
               dev, files_session_manifest (s)->id);
    return -1;
  }
  /* An LVM volume over several disks (disk NULL) takes any of them. */
  if (disk != NULL && fs->disk != NULL && strcmp (fs->disk, disk) != 0) {
    set_error (-ENOENT, "filesystem '%s' is not on disk '%s' but on disk '%s'",
               dev, disk, fs->disk);
    return -1;
  }
  root = mount_fs (s, dev);
  if (root == NULL)
    return -1;
  out->root = strdup (root);
  out->path = files_normalise (path);
  if (out->path != NULL
      && asprintf (&out->display, "%s:%s:%s", fs->disk ? fs->disk : "lvm", dev,
                   out->path)
           == -1)
    out->display = NULL;
  if (!out->root || !out->path || !out->display) {
    files_path_release (out);
    set_error (ENOMEM, "path");
    return -1;
  }
  return 0;
}

static int
ambiguous (struct files_session *s, const char *spec)
{
  const struct files_fs *a = &s->fs.ptr[0], *b = &s->fs.ptr[1];

  set_error (-EINVAL,
             "'%s' is ambiguous: backup '%s' holds %zu filesystems "
             "and no single operating system; name one, as in "
             "'%s:%s:%s' or '%s:%s:%s'",
             spec, files_session_manifest (s)->id, s->fs.len,
             a->disk ? a->disk : "lvm", a->device, spec,
             b->disk ? b->disk : "lvm", b->device, spec);
  return -1;
}

int
files_session_resolve (struct files_session *s, const char *spec,
                       struct files_path *out)
{
  CLEANUP_FREE char *copy = strdup (spec);
  char *colon, *second;
  const char *root;

  memset (out, 0, sizeof *out);
  if (copy == NULL) {
    set_error (ENOMEM, "path");
    return -1;
  }
  if (load_filesystems (s, false) == -1)
    return -1;
  colon = strchr (copy, ':');
  if (colon != NULL) {
    *colon = '\0';
    second = strchr (colon + 1, ':');
    if (second != NULL) {
      *second = '\0';
      return resolve_fs (s, copy, colon + 1, second + 1, out);
    }
    if (strncmp (copy, "/dev/", 5) == 0)
      return resolve_fs (s, NULL, copy, colon + 1, out);
    set_error (-EINVAL,
               "'%s': write DISK:FILESYSTEM:PATH, FILESYSTEM:PATH or "
               "PATH ('vda:/dev/sda1:/etc/hosts')",
               spec);
    return -1;
  }
  if (spec[0] != '/') {
    set_error (-EINVAL, "'%s' is not an absolute path", spec);
    return -1;
  }
  /* One filesystem is the whole tree: no inspection needed. */
  if (s->fs.len == 1)
    return resolve_fs (s, NULL, s->fs.ptr[0].device, spec, out);
  inspect (s);
  if (s->inspected != 1)
    return ambiguous (s, spec);
  root = mount_guest (s);
  if (root == NULL)
    return -1;
  out->root = strdup (root);
  out->path = files_normalise (spec);
  out->display = out->path ? strdup (out->path) : NULL;
  if (!out->root || !out->path || !out->display) {
    files_path_release (out);
    set_error (ENOMEM, "path");
    return -1;
  }
  return 0;
}

int
files_session_mount_all (struct files_session *s)
{
  if (load_filesystems (s, true) == -1)
    return -1;
  for (size_t i = 0; i < s->fs.len; i++)
    if (mount_fs (s, s->fs.ptr[i].device) == NULL) {
      /* One that does not mount leaves the others readable. */
      debug (DEBUG_CHAIN, "files: %s", get_error ());
      error_clear ();
    }
  if (s->inspected == 1 && mount_guest (s) == NULL)
    return -1;
  return 0;
}
