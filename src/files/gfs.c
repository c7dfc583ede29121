/* SPDX-License-Identifier: Apache-2.0 */
/* gfs.c: libguestfs opened with dlopen the first time a files session needs it. */
#include <config.h>

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

#include "common/error.h"
#define FILES_GFS_TABLE_ONLY
#include "gfs.h"

/* The library's run-time name: the soname of libguestfs-dev's libguestfs.so. */
#define FILES_GFS_SONAME "libguestfs.so.0"

struct files_gfs files_gfs;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static char load_error[512]; /* empty when loaded */

static void
load (void)
{
  void *lib = dlopen (FILES_GFS_SONAME, RTLD_NOW | RTLD_LOCAL);
  const char *err;

  if (lib == NULL) {
    err = dlerror ();
    snprintf (load_error, sizeof load_error,
              "cannot load libguestfs (%s): %s: install libguestfs0",
              FILES_GFS_SONAME, err ? err : "not found");
    return;
  }
#define FILES_GFS_LOOKUP(f)                                                    \
  *(void **) &files_gfs.f = dlsym (lib, #f);                                   \
  if (files_gfs.f == NULL) {                                                   \
    snprintf (load_error, sizeof load_error,                                   \
              "libguestfs (%s) has no function '%s': it is too old",           \
              FILES_GFS_SONAME, #f);                                           \
    return;                                                                    \
  }
  FILES_GFS_FUNCTIONS (FILES_GFS_LOOKUP)
#undef FILES_GFS_LOOKUP
}

int
files_gfs_load (void)
{
  pthread_once (&load_once, load);
  if (load_error[0] != '\0') {
    set_error (0, "%s", load_error);
    return -1;
  }
  return 0;
}
