/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz-vm-json.c: fuzz target: a VM's vm.json in a repository.
 *
 * One repository in a temporary directory (under /dev/shm when there is
 * one) serves every input; it is removed at exit. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chain/internal.h"
#include "common/fs.h"
#include "common/error.h"
#include "fuzz.h"

#define MAX_INPUT (64u * 1024)
#define VM "fuzz"

static struct chain_repo *repo;
static char root[64];
static char vm_dir[128];
static char vm_file[160];

static void
remove_repo (void)
{
  chain_repo_free (repo);
  fs_remove_tree_quiet (root);
}

static void
make_repo (void)
{
  const char *tmp = access ("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";

  snprintf (root, sizeof root, "%s/knib-fuzz-XXXXXX", tmp);
  if (mkdtemp (root) == NULL)
    abort ();
  repo = chain_repo_open (root, true);
  if (repo == NULL) {
    fprintf (stderr, "fuzz-vm-json: %s\n", get_error ());
    abort ();
  }
  snprintf (vm_dir, sizeof vm_dir, "%s/vms", root);
  mkdir (vm_dir, 0700);
  snprintf (vm_dir, sizeof vm_dir, "%s/vms/" VM, root);
  if (mkdir (vm_dir, 0700) == -1 && errno != EEXIST)
    abort ();
  snprintf (vm_file, sizeof vm_file, "%s/vm.json", vm_dir);
  atexit (remove_repo);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct chain_vm *vm;
  int fd;

  if (size > MAX_INPUT)
    return 0;
  if (repo == NULL)
    make_repo ();
  fd = open (vm_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd == -1 || (size > 0 && write (fd, data, size) != (ssize_t) size))
    abort ();
  close (fd);
  vm = chain_vm_load (repo, VM);
  chain_vm_free (vm);
  error_clear ();
  return 0;
}
