/* SPDX-License-Identifier: Apache-2.0 */
/* gfs.h: libguestfs, loaded when a files session starts, not when knib does. */
#ifndef KNIB_FILES_GFS_H
#define KNIB_FILES_GFS_H

#include <guestfs.h>

/* libguestfs brings libvirt, glib, gnutls and some forty other libraries:
 * linked into knib they cost every command (a backup too) most of its
 * start-up time and about 11 MiB of resident memory.  So src/files loads
 * it with dlopen when a session opens (files_gfs_load), and the calls in
 * src/files go through this table under their usual names. */
#define FILES_GFS_FUNCTIONS(X)                                                 \
  X (guestfs_add_drive_opts)                                                   \
  X (guestfs_checksum)                                                         \
  X (guestfs_close)                                                            \
  X (guestfs_create_flags)                                                     \
  X (guestfs_delete_event_callback)                                            \
  X (guestfs_download)                                                         \
  X (guestfs_exists)                                                           \
  X (guestfs_filesystem_available)                                             \
  X (guestfs_free_lvm_pv_list)                                                 \
  X (guestfs_free_partition_list)                                              \
  X (guestfs_free_statns)                                                      \
  X (guestfs_free_statns_list)                                                 \
  X (guestfs_free_utsname)                                                     \
  X (guestfs_free_xattr_list)                                                  \
  X (guestfs_inspect_get_mountpoints)                                          \
  X (guestfs_inspect_os)                                                       \
  X (guestfs_is_dir)                                                           \
  X (guestfs_is_symlink)                                                       \
  X (guestfs_last_errno)                                                       \
  X (guestfs_last_error)                                                       \
  X (guestfs_launch)                                                           \
  X (guestfs_lgetxattrs)                                                       \
  X (guestfs_list_devices)                                                     \
  X (guestfs_list_filesystems)                                                 \
  X (guestfs_ls)                                                               \
  X (guestfs_lstatns)                                                          \
  X (guestfs_lstatnslist)                                                      \
  X (guestfs_lvm_canonical_lv_name)                                            \
  X (guestfs_mkmountpoint)                                                     \
  X (guestfs_mount_local)                                                      \
  X (guestfs_mount_local_run)                                                  \
  X (guestfs_mount_ro)                                                         \
  X (guestfs_parse_environment)                                                \
  X (guestfs_part_get_parttype)                                                \
  X (guestfs_part_list)                                                        \
  X (guestfs_pread)                                                            \
  X (guestfs_pvs_full)                                                         \
  X (guestfs_readlink)                                                         \
  X (guestfs_readlinklist)                                                     \
  X (guestfs_rmmountpoint)                                                     \
  X (guestfs_set_backend)                                                      \
  X (guestfs_set_backend_settings)                                             \
  X (guestfs_set_error_handler)                                                \
  X (guestfs_set_event_callback)                                               \
  X (guestfs_shutdown)                                                         \
  X (guestfs_tar_out_opts)                                                     \
  X (guestfs_utsname)                                                          \
  X (guestfs_vfs_label)                                                        \
  X (guestfs_vfs_type)                                                         \
  X (guestfs_vfs_uuid)                                                         \
  X (guestfs_vgpvuuids)

struct files_gfs {
#define FILES_GFS_MEMBER(f) __typeof__ (f) *f;
  FILES_GFS_FUNCTIONS (FILES_GFS_MEMBER)
#undef FILES_GFS_MEMBER
};

extern struct files_gfs files_gfs;

/* Load libguestfs (once; later calls return the first one's result).
 * -1 with set_error when it is not installed or lacks a function. */
int files_gfs_load (void) __attribute__ ((warn_unused_result));

/* The calls of src/files, through the table (gfs.c, which fills it,
 * defines FILES_GFS_TABLE_ONLY). */
#ifndef FILES_GFS_TABLE_ONLY
#define guestfs_add_drive_opts (*files_gfs.guestfs_add_drive_opts)
#define guestfs_checksum (*files_gfs.guestfs_checksum)
#define guestfs_close (*files_gfs.guestfs_close)
#define guestfs_create_flags (*files_gfs.guestfs_create_flags)
#define guestfs_delete_event_callback (*files_gfs.guestfs_delete_event_callback)
#define guestfs_download (*files_gfs.guestfs_download)
#define guestfs_exists (*files_gfs.guestfs_exists)
#define guestfs_free_lvm_pv_list (*files_gfs.guestfs_free_lvm_pv_list)
#define guestfs_free_partition_list (*files_gfs.guestfs_free_partition_list)
#define guestfs_free_statns (*files_gfs.guestfs_free_statns)
#define guestfs_free_statns_list (*files_gfs.guestfs_free_statns_list)
#define guestfs_free_xattr_list (*files_gfs.guestfs_free_xattr_list)
#define guestfs_inspect_get_mountpoints                                        \
  (*files_gfs.guestfs_inspect_get_mountpoints)
#define guestfs_inspect_os (*files_gfs.guestfs_inspect_os)
#define guestfs_is_dir (*files_gfs.guestfs_is_dir)
#define guestfs_is_symlink (*files_gfs.guestfs_is_symlink)
#define guestfs_last_errno (*files_gfs.guestfs_last_errno)
#define guestfs_last_error (*files_gfs.guestfs_last_error)
#define guestfs_launch (*files_gfs.guestfs_launch)
#define guestfs_lgetxattrs (*files_gfs.guestfs_lgetxattrs)
#define guestfs_list_devices (*files_gfs.guestfs_list_devices)
#define guestfs_list_filesystems (*files_gfs.guestfs_list_filesystems)
#define guestfs_ls (*files_gfs.guestfs_ls)
#define guestfs_lstatns (*files_gfs.guestfs_lstatns)
#define guestfs_lstatnslist (*files_gfs.guestfs_lstatnslist)
#define guestfs_lvm_canonical_lv_name (*files_gfs.guestfs_lvm_canonical_lv_name)
#define guestfs_mkmountpoint (*files_gfs.guestfs_mkmountpoint)
#define guestfs_mount_local (*files_gfs.guestfs_mount_local)
#define guestfs_mount_local_run (*files_gfs.guestfs_mount_local_run)
#define guestfs_mount_ro (*files_gfs.guestfs_mount_ro)
#define guestfs_parse_environment (*files_gfs.guestfs_parse_environment)
#define guestfs_part_get_parttype (*files_gfs.guestfs_part_get_parttype)
#define guestfs_part_list (*files_gfs.guestfs_part_list)
#define guestfs_pvs_full (*files_gfs.guestfs_pvs_full)
#define guestfs_readlink (*files_gfs.guestfs_readlink)
#define guestfs_readlinklist (*files_gfs.guestfs_readlinklist)
#define guestfs_set_backend (*files_gfs.guestfs_set_backend)
#define guestfs_set_backend_settings (*files_gfs.guestfs_set_backend_settings)
#define guestfs_set_error_handler (*files_gfs.guestfs_set_error_handler)
#define guestfs_set_event_callback (*files_gfs.guestfs_set_event_callback)
#define guestfs_shutdown (*files_gfs.guestfs_shutdown)
#define guestfs_tar_out_opts (*files_gfs.guestfs_tar_out_opts)
#define guestfs_vfs_label (*files_gfs.guestfs_vfs_label)
#define guestfs_vfs_type (*files_gfs.guestfs_vfs_type)
/* Function-like: struct guestfs_utsname is also a type's name. */
#define guestfs_utsname(g) (*files_gfs.guestfs_utsname) (g)
#define guestfs_rmmountpoint (*files_gfs.guestfs_rmmountpoint)
#define guestfs_pread (*files_gfs.guestfs_pread)
#define guestfs_free_utsname (*files_gfs.guestfs_free_utsname)
#define guestfs_filesystem_available (*files_gfs.guestfs_filesystem_available)
#define guestfs_vfs_uuid (*files_gfs.guestfs_vfs_uuid)
#define guestfs_vgpvuuids (*files_gfs.guestfs_vgpvuuids)

#endif

#endif
