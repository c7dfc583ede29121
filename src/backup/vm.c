/* SPDX-License-Identifier: Apache-2.0 */
/* vm.c: a throwaway QEMU on temporary overlays of a backup's images.
 *
 * Boot validation runs one, quick restore will too.  The overlays live
 * in a private scratch directory with QEMU's sockets, its pid file and
 * its console log; a lock file there, held while the run lives, tells a
 * later run whether the directory is a leftover of a killed one. */
#include <config.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "backup/internal.h"
#include "common/cleanup.h"
#include "common/command.h"
#include "common/debug.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/scratch.h"
#include "common/util.h"
#include "domain/domain.h"

#define QEMU_PROGRAM "qemu-system-x86_64"
#define VM_DIR_PREFIX "vm-"
#define OWNER_FILE "owner.lock"
#define PID_FILE "qemu.pid"
#define QMP_FILE "qmp.sock"
#define AGENT_FILE "qga.sock"
#define CONSOLE_FILE "console.log"
#define NVRAM_FILE "nvram.fd"
/* In a directory kept on purpose (--keep): not a leftover. */
#define KEPT_FILE "kept"

/* Memory that QEMU itself needs beside the guest's. */
#define QEMU_OVERHEAD_MIB 256

#define START_POLL_MS 20
#define QEMU_IMG_TIMEOUT_MS 120000

/* Where Debian's ovmf package puts the UEFI firmware and its NVRAM
 * template, in the order they are tried. */
static const char *const ovmf_code[] = {
  "/usr/share/OVMF/OVMF_CODE_4M.fd",
  "/usr/share/OVMF/OVMF_CODE.fd",
  NULL,
};
static const char *const ovmf_vars[] = {
  "/usr/share/OVMF/OVMF_VARS_4M.fd",
  "/usr/share/OVMF/OVMF_VARS.fd",
  NULL,
};

struct backup_vm {
  bool keep;
  int owner_fd; /* the lock that says the directory is in use */
  char *dir;
  char *qmp_path;
  char *agent_path;
  char *console_path;
  char *pid_file;
  const char *accel;
  char *owner_path;
  char **overlays; /* one per disk of the backup */
  size_t n_overlays;
  struct command *cmd;
  struct qmp_client *c;
  bool exited;
  double powered_on; /* monotonic seconds; 0 before */
};

const char *
backup_vm_accel_name (enum backup_vm_accel a)
{
  switch (a) {
  case BACKUP_VM_ACCEL_AUTO:
    return "auto";
  case BACKUP_VM_ACCEL_KVM:
    return "kvm";
  case BACKUP_VM_ACCEL_TCG:
    return "tcg";
  }
  return "?";
}

int
backup_vm_accel_parse (const char *s, enum backup_vm_accel *a)
{
  if (strcmp (s, "auto") == 0)
    *a = BACKUP_VM_ACCEL_AUTO;
  else if (strcmp (s, "kvm") == 0)
    *a = BACKUP_VM_ACCEL_KVM;
  else if (strcmp (s, "tcg") == 0)
    *a = BACKUP_VM_ACCEL_TCG;
  else {
    set_error (EINVAL, "accelerator '%s' is not auto, kvm or tcg", s);
    return -1;
  }
  return 0;
}

/* Whether /proc/cpuinfo says that this host is itself a virtual
 * machine (the "hypervisor" CPU flag). */
static bool
host_is_a_vm (void)
{
  CLEANUP_FCLOSE FILE *fp = fopen ("/proc/cpuinfo", "re");
  char line[4096];

  while (fp != NULL && fgets (line, sizeof line, fp) != NULL)
    if (strncmp (line, "flags", 5) == 0)
      return strstr (line, " hypervisor") != NULL;
  return false;
}

static bool
kvm_usable (void)
{
  int fd = open ("/dev/kvm", O_RDWR | O_CLOEXEC);

  if (fd == -1)
    return false;
  close (fd);
  return true;
}

static const char *
choose_accel (enum backup_vm_accel a)
{
  switch (a) {
  case BACKUP_VM_ACCEL_KVM:
    return "kvm";
  case BACKUP_VM_ACCEL_TCG:
    return "tcg";
  case BACKUP_VM_ACCEL_AUTO:
    break;
  }
  return kvm_usable () && !host_is_a_vm () ? "kvm" : "tcg";
}

/* MemAvailable of /proc/meminfo in MiB, or 0 when unknown. */
static uint64_t
available_mib (void)
{
  CLEANUP_FCLOSE FILE *fp = fopen ("/proc/meminfo", "re");
  char line[256];
  unsigned long long kib;

  while (fp != NULL && fgets (line, sizeof line, fp) != NULL)
    if (sscanf (line, "MemAvailable: %llu kB", &kib) == 1)
      return kib / 1024;
  return 0;
}

static bool
exists (const char *path)
{
  return access (path, R_OK) == 0;
}

/* ---- The scratch directory ---- */

static int
lock_owner (int fd)
{
  struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };

  return fcntl (fd, F_OFD_SETLK, &fl);
}

static int
make_dir (struct backup_vm *vm, const char *root)
{
  char *path;

  if (scratch_make_dir (root, VM_DIR_PREFIX, AGENT_FILE, &path) == -1)
    return -1;
  vm->dir = path;
  {
    char *owner = str_printf ("%s/" OWNER_FILE, path);

    if (owner == NULL)
      return -1;
    vm->owner_path = owner;
    vm->owner_fd = open (owner, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (vm->owner_fd == -1 || lock_owner (vm->owner_fd) == -1) {
      set_error (errno, "'%s'", owner);
      return -1;
    }
  }
  vm->qmp_path = str_printf ("%s/" QMP_FILE, path);
  vm->agent_path = str_printf ("%s/" AGENT_FILE, path);
  vm->console_path = str_printf ("%s/" CONSOLE_FILE, path);
  vm->pid_file = str_printf ("%s/" PID_FILE, path);
  if (vm->qmp_path == NULL || vm->agent_path == NULL || vm->console_path == NULL
      || vm->pid_file == NULL)
    return -1;
  return 0;
}

/* A qcow2 overlay of image (virtual size bytes) in the scratch
 * directory. */
static char *
make_overlay (struct backup_vm *vm, const char *disk, const char *image,
              uint64_t size)
{
  CLEANUP_FREE char *abs = realpath (image, NULL);
  char *overlay;
  struct command *cmd;
  int r;

  if (abs == NULL) {
    set_error (errno, "image '%s'", image);
    return NULL;
  }
  overlay = str_printf ("%s/%s.qcow2", vm->dir, disk);
  cmd = command_new ("qemu-img");
  if (overlay == NULL || cmd == NULL) {
    free (overlay);
    command_free (cmd);
    return NULL;
  }
  /* -u: the backing file is not opened (the caller checked the chain),
   * so qemu-img takes no lock on the repository either.  The name
   * recorded says which image the overlay reads (a pin's test, and a
   * --keep user's); QEMU itself gets the chain explicitly. */
  command_add_args (cmd, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-u",
                    "-b", abs, overlay, NULL);
  command_add_argf (cmd, "%llu", (unsigned long long) size);
  command_set_timeout (cmd, QEMU_IMG_TIMEOUT_MS);
  r = command_run (cmd, NULL);
  command_free (cmd);
  if (r == -1) {
    error_prepend ("disk '%s': overlay", disk);
    free (overlay);
    return NULL;
  }
  return overlay;
}

/* ---- The hardware ---- */

struct hardware {
  const char *machine;
  const char *accel;
  char *cpu; /* -cpu, or NULL: QEMU's default */
  uint64_t memory_mib;
  unsigned cpus;
  const char *bios;   /* -bios IMAGE, or NULL */
  const char *pflash; /* UEFI code, or NULL */
  const char *vars;   /* its NVRAM template */
  bool secure;
  const char *kernel, *initrd, *cmdline;
};

static const char *
first_existing (const char *const *paths)
{
  for (size_t i = 0; paths[i] != NULL; i++)
    if (exists (paths[i]))
      return paths[i];
  return NULL;
}

/* The firmware the definition asks for, installed on this host. */
static int
choose_firmware (const struct domain_info *d, struct hardware *hw)
{
  bool efi;

  if (d->firmware != NULL && strcmp (d->firmware, "bios") != 0
      && strcmp (d->firmware, "efi") != 0) {
    set_error (-EINVAL,
               "the VM's definition asks for firmware '%s', which knib does "
               "not know (bios and efi are)",
               d->firmware);
    return -1;
  }
  if (d->loader_type != NULL && strcmp (d->loader_type, "rom") != 0
      && strcmp (d->loader_type, "pflash") != 0) {
    set_error (-EINVAL,
               "the VM's definition has a firmware loader of type '%s', "
               "which knib does not know (rom and pflash are)",
               d->loader_type);
    return -1;
  }
  efi = (d->firmware && strcmp (d->firmware, "efi") == 0)
        || (d->loader_type && strcmp (d->loader_type, "pflash") == 0);
  if (!efi) {
    if (d->loader == NULL)
      return 0; /* QEMU's SeaBIOS */
    if (!exists (d->loader)) {
      set_error (-ENOENT,
                 "the VM's firmware '%s' is not installed on this host",
                 d->loader);
      return -1;
    }
    hw->bios = d->loader;
    return 0;
  }
  hw->pflash = d->loader ? d->loader : first_existing (ovmf_code);
  hw->vars = d->nvram_template ? d->nvram_template : first_existing (ovmf_vars);
  if (hw->pflash == NULL || !exists (hw->pflash)) {
    set_error (-ENOENT,
               "the VM boots with UEFI, but its firmware '%s' is not "
               "installed on this host (Debian: apt-get install ovmf)",
               hw->pflash ? hw->pflash : ovmf_code[0]);
    return -1;
  }
  if (hw->vars == NULL || !exists (hw->vars)) {
    set_error (-ENOENT,
               "the VM boots with UEFI, but the NVRAM template '%s' is not "
               "installed on this host (Debian: apt-get install ovmf)",
               hw->vars ? hw->vars : ovmf_vars[0]);
    return -1;
  }
  hw->secure = d->loader_secure;
  return 0;
}

/* Characters of a CPU model or feature name that cannot end QEMU's
 * option early. */
static bool
cpu_name_ok (const char *s)
{
  if (s == NULL || s[0] == '\0')
    return false;
  for (; *s; s++)
    if (!(isalnum ((unsigned char) *s) || *s == '-' || *s == '_' || *s == '.'))
      return false;
  return true;
}

/* "Haswell,pcid=on,hle=off": the definition's custom model and the
 * features it requires or forbids (optional ones are left to QEMU). */
static char *
custom_cpu (const struct domain_info *d)
{
  CLEANUP_FREE char *text = NULL;
  char *done;

  if (!cpu_name_ok (d->cpu_model)) {
    set_error (-EINVAL,
               "the VM's definition asks for CPU model '%s', which is not a "
               "CPU model name",
               d->cpu_model);
    return NULL;
  }
  text = strdup (d->cpu_model);
  for (size_t i = 0; text != NULL && i < d->cpu_features.len; i++) {
    const struct domain_cpu_feature *f = &d->cpu_features.ptr[i];
    const char *policy = f->policy ? f->policy : "require";
    const char *value;
    char *more;

    if (strcmp (policy, "require") == 0 || strcmp (policy, "force") == 0)
      value = "on";
    else if (strcmp (policy, "disable") == 0 || strcmp (policy, "forbid") == 0)
      value = "off";
    else if (strcmp (policy, "optional") == 0)
      continue;
    else {
      set_error (-EINVAL,
                 "the VM's definition has CPU feature '%s' with policy '%s', "
                 "which knib does not know",
                 f->name, policy);
      return NULL;
    }
    if (!cpu_name_ok (f->name)) {
      set_error (-EINVAL,
                 "the VM's definition has CPU feature '%s', which is not a "
                 "feature name",
                 f->name);
      return NULL;
    }
    more = str_printf ("%s,%s=%s", text, f->name, value);
    free (text);
    text = more;
  }
  if (text == NULL) {
    set_error (ENOMEM, "CPU model");
    return NULL;
  }
  done = text;
  text = NULL;
  return done;
}

int
backup_vm_cpu_option (const struct domain_info *d, const char *accel,
                      bool nested, char **cpu, char **note)
{
  const char *mode = d ? d->cpu_mode : NULL;
  bool kvm = strcmp (accel, "kvm") == 0;
  const char *want = NULL;

  *cpu = *note = NULL;
  if (mode == NULL && d && d->cpu_model)
    mode = "custom";
  if (mode == NULL || (strcmp (mode, "custom") == 0 && d->cpu_model == NULL))
    /* Nothing asked: the host's CPU under KVM, except nested, where
     * KVM refuses some of its MSRs (QEMU dies on an assertion). */
    want = kvm && !nested ? "host" : NULL;
  else if (strcmp (mode, "host-passthrough") == 0
           || strcmp (mode, "host-model") == 0) {
    if (kvm && !nested)
      want = "host";
    else {
      *note = str_printf ("the VM's definition asks for CPU mode '%s', which "
                          "%s: the validation VM has QEMU's default CPU model",
                          mode,
                          kvm ? "nested KVM cannot give here"
                              : "needs KVM (this VM runs under TCG)");
      if (*note == NULL)
        goto nomem;
    }
  }
  else if (strcmp (mode, "maximum") == 0)
    want = "max";
  else if (strcmp (mode, "custom") == 0)
    return (*cpu = custom_cpu (d)) ? 0 : -1;
  else {
    set_error (-EINVAL,
               "the VM's definition asks for CPU mode '%s', which knib does "
               "not know (host-passthrough, host-model, maximum and custom "
               "are)",
               mode);
    return -1;
  }
  if (want != NULL && (*cpu = strdup (want)) == NULL)
    goto nomem;
  return 0;
nomem:
  free (*note);
  *note = NULL;
  set_error (ENOMEM, "CPU model");
  return -1;
}

/* Is machine a line's first word in help (QEMU's "-machine help")? */
static bool
machine_listed (const char *help, const char *machine)
{
  size_t n = strlen (machine);

  for (const char *p = help; p != NULL && *p; p = strchr (p, '\n')) {
    if (*p == '\n')
      p++;
    if (strncmp (p, machine, n) == 0 && (p[n] == ' ' || p[n] == '\n'))
      return true;
  }
  return false;
}

int
backup_vm_machine (const char *want, const char *help, const char **use,
                   char **note)
{
  *use = want;
  *note = NULL;
  if (help == NULL || machine_listed (help, want))
    return 0;
  /* A versioned type of a newer QEMU (or one this QEMU dropped): the
   * same family's current version. */
  if (strncmp (want, "pc-q35-", 7) == 0)
    *use = "q35";
  else if (strncmp (want, "pc-i440fx-", 10) == 0
           || (strncmp (want, "pc-", 3) == 0 && want[3] >= '0'
               && want[3] <= '9'))
    *use = "pc";
  else
    return 0; /* QEMU will say that it does not know it */
  *note = str_printf ("this QEMU has no machine type '%s' (the VM's "
                      "definition asks for it): the validation VM is a '%s'",
                      want, *use);
  if (*note == NULL) {
    set_error (ENOMEM, "machine type");
    return -1;
  }
  return 0;
}

/* QEMU's list of machine types ("-machine help"), or NULL when it
 * cannot be had (then the machine type is given as it is). */
static char *
machine_help (void)
{
  struct command *cmd = command_new (QEMU_PROGRAM);
  struct error_saved err;
  const char *out;
  char *help = NULL;

  if (cmd == NULL)
    return NULL;
  error_save (&err);
  command_add_args (cmd, "-machine", "help", NULL);
  command_capture_stdout (cmd, 0);
  command_set_timeout (cmd, QEMU_IMG_TIMEOUT_MS);
  if (command_run (cmd, NULL) == 0 && (out = command_get_stdout (cmd, NULL)))
    help = strdup (out);
  else
    debug (DEBUG_CHAIN, "%s -machine help: %s", QEMU_PROGRAM, get_error ());
  command_free (cmd);
  error_restore (&err);
  return help;
}

static int
choose_hardware (const struct domain_info *d, const struct backup_vm_options *o,
                 struct hardware *hw, chain_string_vector *notes)
{
  uint64_t avail;
  char *note;

  hw->machine = "pc";
  if (d != NULL && d->machine != NULL) {
    CLEANUP_FREE char *help = machine_help ();

    if (backup_vm_machine (d->machine, help, &hw->machine, &note) == -1)
      return -1;
    if (note != NULL)
      chain_note_add (notes, note);
  }
  hw->accel = choose_accel (o->accel);
  if (backup_vm_cpu_option (d, hw->accel, host_is_a_vm (), &hw->cpu, &note)
      == -1)
    return -1;
  if (note != NULL)
    chain_note_add (notes, note);
  hw->memory_mib = o->memory_mib        ? o->memory_mib
                   : d && d->memory_kib ? (d->memory_kib + 1023) / 1024
                                        : BACKUP_VM_DEFAULT_MEMORY_MIB;
  hw->cpus = o->cpus         ? o->cpus
             : d && d->vcpus ? d->vcpus
                             : BACKUP_VM_DEFAULT_CPUS;
  if (d != NULL) {
    if (choose_firmware (d, hw) == -1)
      return -1;
    hw->kernel = d->kernel;
    hw->initrd = d->initrd;
    hw->cmdline = d->cmdline;
    if (hw->kernel && !exists (hw->kernel)) {
      set_error (-ENOENT,
                 "the VM boots kernel '%s' directly, which is not on this "
                 "host",
                 hw->kernel);
      return -1;
    }
    if (hw->initrd && !exists (hw->initrd)) {
      set_error (-ENOENT,
                 "the VM boots initrd '%s' directly, which is not on this "
                 "host",
                 hw->initrd);
      return -1;
    }
  }
  avail = available_mib ();
  if (avail > 0 && hw->memory_mib + QEMU_OVERHEAD_MIB > avail) {
    set_error (-ENOMEM,
               "not enough free memory for the VM: it needs %llu MiB (and "
               "QEMU about %d MiB), the host has %llu MiB available; give "
               "less with --memory MiB",
               (unsigned long long) hw->memory_mib, QEMU_OVERHEAD_MIB,
               (unsigned long long) avail);
    return -1;
  }
  return 0;
}

/* ---- QEMU's command line ---- */

static int
add_json_arg (struct command *cmd, const char *opt, json_t *j)
{
  CLEANUP_FREE char *text = j ? json_dumps (j, JSON_COMPACT) : NULL;

  json_decref (j);
  if (text == NULL) {
    set_error (ENOMEM, "out of memory");
    return -1;
  }
  command_add_args (cmd, opt, text, NULL);
  return 0;
}

/* The boot index of disk i (0: none): the definition's boot order when
 * it gives one, else the first disk boots. */
static unsigned
boot_index (const struct domain_info *d, const struct domain_disk *dd, size_t i)
{
  bool any = false;

  for (size_t j = 0; d != NULL && j < d->disks.len; j++)
    any |= d->disks.ptr[j].boot > 0;
  if (any)
    return dd ? dd->boot : 0;
  return i == 0 ? 1 : 0;
}

static const struct domain_disk *
find_disk (const struct domain_info *d, const char *name)
{
  for (size_t j = 0; d != NULL && j < d->disks.len; j++)
    if (strcmp (d->disks.ptr[j].target, name) == 0)
      return &d->disks.ptr[j];
  return NULL;
}

/* Is machine (a QEMU machine type) a q35 one? */
static bool
is_q35 (const char *machine)
{
  return strcmp (machine, "q35") == 0 || strncmp (machine, "pc-q35-", 7) == 0;
}

char *
backup_vm_disk_device (const char *machine, const char *target, const char *bus,
                       const char *node, size_t i, unsigned boot,
                       struct backup_vm_buses *b, char **note)
{
  char boot_opt[32] = "";

  *note = NULL;
  if (boot > 0)
    snprintf (boot_opt, sizeof boot_opt, ",bootindex=%u", boot);
  if (strcmp (bus, "ide") == 0 && !is_q35 (machine)) {
    /* The machine's own IDE controller (i440FX's PIIX): hda is the
     * master of its first channel, hdb the slave, hdc and hdd the
     * second channel, as libvirt places them. */
    unsigned index;

    if (strlen (target) != 3 || strncmp (target, "hd", 2) != 0
        || target[2] < 'a' || target[2] > 'd') {
      set_error (-EINVAL,
                 "disk '%s' is on bus ide, whose controller has places for "
                 "hda to hdd only",
                 target);
      return NULL;
    }
    index = (unsigned) (target[2] - 'a');
    return str_printf ("ide-hd,drive=%s,bus=ide.%u,unit=%u,id=knib-dev-%zu%s",
                       node, index / 2, index % 2, i, boot_opt);
  }
  if (strcmp (bus, "sata") == 0 || strcmp (bus, "ide") == 0) {
    if (strcmp (bus, "ide") == 0)
      *note = str_printf ("disk '%s' is on bus ide, which the q35 machine '%s' "
                          "does not have: the validation VM gives it as a "
                          "SATA disk",
                          target, machine);
    if (b->sata == 6) {
      free (*note);
      *note = NULL;
      set_error (-EINVAL, "disk '%s': a validation VM has 6 SATA ports",
                 target);
      return NULL;
    }
    b->ahci = true;
    return str_printf ("ide-hd,drive=%s,bus=knib-ahci.%u,id=knib-dev-%zu%s",
                       node, b->sata++, i, boot_opt);
  }
  if (strcmp (bus, "virtio") == 0)
    return str_printf ("virtio-blk-pci,drive=%s,id=knib-dev-%zu%s", node, i,
                       boot_opt);
  if (strcmp (bus, "scsi") == 0) {
    b->scsi = true;
    return str_printf ("scsi-hd,drive=%s,bus=knib-scsi.0,id=knib-dev-%zu%s",
                       node, i, boot_opt);
  }
  set_error (-EINVAL,
             "disk '%s' is on bus '%s', which a validation VM cannot give "
             "(virtio, sata, ide and scsi can)",
             target, bus);
  return NULL;
}

/* The block nodes of disk i: its overlay, whose backing chain is the
 * backup's images given one by one (backing), so that QEMU follows no
 * name that an image records. */
static int
add_disk_node (struct command *cmd, const char *node, const char *overlay,
               const char *backing)
{
  json_t *chain = json_loads (backing, 0, NULL);

  if (chain == NULL) {
    set_error (-EINVAL, "the backup's chain for QEMU");
    return -1;
  }
  return add_json_arg (cmd, "-blockdev",
                       json_pack ("{s:s, s:s, s:{s:s, s:s}, s:o}", "driver",
                                  "qcow2", "node-name", node, "file", "driver",
                                  "file", "filename", overlay, "backing",
                                  chain));
}

/* Every disk: its nodes, the controllers their buses need, the
 * devices. */
static int
add_disks (struct command *cmd, const struct hardware *hw,
           const struct domain_info *d, const struct chain_manifest *m,
           char *const *overlays, char *const *backings,
           chain_string_vector *notes)
{
  struct backup_vm_buses b = { .ahci = false };
  char **devs = calloc (m->disks.len, sizeof *devs);
  int r = -1;

  if (devs == NULL) {
    set_error (errno, "calloc");
    return -1;
  }
  for (size_t i = 0; i < m->disks.len; i++) {
    const char *name = m->disks.ptr[i].name;
    const struct domain_disk *dd = find_disk (d, name);
    char *note;
    char node[32];

    snprintf (node, sizeof node, "knib-disk-%zu", i);
    if (add_disk_node (cmd, node, overlays[i], backings[i]) == -1)
      goto out;
    devs[i] = backup_vm_disk_device (hw->machine, name,
                                     dd && dd->bus ? dd->bus : "virtio", node,
                                     i, boot_index (d, dd, i), &b, &note);
    if (devs[i] == NULL)
      goto out;
    if (note != NULL)
      chain_note_add (notes, note);
  }
  if (b.ahci)
    command_add_args (cmd, "-device", "ich9-ahci,id=knib-ahci", NULL);
  if (b.scsi)
    command_add_args (cmd, "-device", "virtio-scsi-pci,id=knib-scsi", NULL);
  for (size_t i = 0; i < m->disks.len; i++)
    command_add_args (cmd, "-device", devs[i], NULL);
  r = 0;
out:
  for (size_t i = 0; i < m->disks.len; i++)
    free (devs[i]);
  free (devs);
  return r;
}

static int
add_firmware (struct backup_vm *vm, struct command *cmd,
              const struct hardware *hw)
{
  CLEANUP_FREE char *nvram = NULL;
  CLEANUP_FREE char *data = NULL;
  size_t len;

  if (hw->bios != NULL)
    command_add_args (cmd, "-bios", hw->bios, NULL);
  if (hw->pflash == NULL)
    return 0;
  /* A fresh copy of the NVRAM template: the VM may write to it. */
  data = fs_read_file (hw->vars, "NVRAM template", 64u << 20, &len);
  if (data == NULL
      || fs_replace_file (vm->dir, NVRAM_FILE, data, len, "NVRAM") == -1)
    return -1;
  nvram = str_printf ("%s/" NVRAM_FILE, vm->dir);
  if (nvram == NULL)
    return -1;
  if (add_json_arg (cmd, "-blockdev",
                    json_pack ("{s:s, s:s, s:b, s:{s:s, s:s}}", "driver", "raw",
                               "node-name", "knib-pflash0", "read-only", 1,
                               "file", "driver", "file", "filename",
                               hw->pflash))
        == -1
      || add_json_arg (cmd, "-blockdev",
                       json_pack ("{s:s, s:s, s:{s:s, s:s}}", "driver", "raw",
                                  "node-name", "knib-pflash1", "file", "driver",
                                  "file", "filename", nvram))
           == -1)
    return -1;
  return 0;
}

static struct command *
build_command (struct backup_vm *vm, const struct hardware *hw,
               const struct domain_info *d, const struct chain_manifest *m,
               char *const *backings, chain_string_vector *notes)
{
  struct command *cmd = command_new (QEMU_PROGRAM);
  CLEANUP_FREE char *qmp = backup_opts_escape (vm->qmp_path);
  CLEANUP_FREE char *agent = backup_opts_escape (vm->agent_path);
  CLEANUP_FREE char *console = backup_opts_escape (vm->console_path);

  if (cmd == NULL || qmp == NULL || agent == NULL || console == NULL)
    goto fail;
  /* The scratch directory early on the command line, where a later run
   * looks for it (backup_process_of). */
  command_add_args (cmd, "-pidfile", vm->pid_file, NULL);
  command_add_arg (cmd, "-chardev");
  command_add_argf (cmd, "socket,id=knib-qmp,path=%s,server=on,wait=off", qmp);
  command_add_args (cmd, "-mon", "chardev=knib-qmp,mode=control", NULL);
  command_add_args (cmd, "-name", "knib-vm", "-S", "-nodefaults",
                    "-no-user-config", "-nic", "none", "-display", "none",
                    NULL);
  /* A panicked guest stays, for its screenshot.  (Not -no-shutdown:
   * with it QEMU pauses on SIGTERM too, and would outlive knib.) */
  command_add_args (cmd, "-action", "panic=pause", NULL);
  command_add_arg (cmd, "-machine");
  command_add_argf (cmd, "%s,accel=%s%s%s", hw->machine, hw->accel,
                    hw->pflash ? ",pflash0=knib-pflash0,pflash1=knib-pflash1"
                               : "",
                    hw->secure ? ",smm=on" : "");
  if (hw->cpu != NULL)
    command_add_args (cmd, "-cpu", hw->cpu, NULL);
  command_add_arg (cmd, "-m");
  command_add_argf (cmd, "%llu", (unsigned long long) hw->memory_mib);
  command_add_arg (cmd, "-smp");
  command_add_argf (cmd, "%u", hw->cpus);
  /* A display for screendump (and the VGA text buffer), a pvpanic
   * device for GUEST_PANICKED, the serial console into a file, and the
   * guest agent's channel. */
  command_add_args (cmd, "-device", "VGA", "-device", "pvpanic", NULL);
  command_add_arg (cmd, "-chardev");
  command_add_argf (cmd, "file,id=knib-console,path=%s", console);
  command_add_args (cmd, "-serial", "chardev:knib-console", NULL);
  command_add_arg (cmd, "-chardev");
  command_add_argf (cmd, "socket,id=knib-qga,path=%s,server=on,wait=off",
                    agent);
  command_add_args (cmd, "-device", "virtio-serial-pci,id=knib-serial",
                    "-device",
                    "virtserialport,bus=knib-serial.0,chardev=knib-qga,"
                    "name=org.qemu.guest_agent.0",
                    NULL);
  if (hw->kernel)
    command_add_args (cmd, "-kernel", hw->kernel, NULL);
  if (hw->initrd)
    command_add_args (cmd, "-initrd", hw->initrd, NULL);
  if (hw->kernel && hw->cmdline)
    command_add_args (cmd, "-append", hw->cmdline, NULL);
  if (add_firmware (vm, cmd, hw) == -1)
    goto fail;
  if (add_disks (cmd, hw, d, m, vm->overlays, backings, notes) == -1)
    goto fail;
  command_set_name (cmd, QEMU_PROGRAM);
  command_set_process_group (cmd, true);
  command_set_die_with_parent (cmd, true);
  return cmd;
fail:
  command_free (cmd);
  return NULL;
}

/* ---- Start and stop ---- */

static void
start_failed (struct backup_vm *vm, int status)
{
  const char *err = command_get_stderr (vm->cmd);
  int len = (int) strcspn (err, "\n");

  if (command_term_signal (vm->cmd) != 0)
    set_error (-EIO, "%s was killed by signal %d", QEMU_PROGRAM,
               command_term_signal (vm->cmd));
  else
    set_error (-EIO, "%s exited with status %d: %.*s", QEMU_PROGRAM, status,
               len > 0 ? len : 12, len > 0 ? err : "(no message)");
}

static int
wait_ready (struct backup_vm *vm, int timeout_ms)
{
  int64_t deadline = deadline_after_ms (timeout_ms);
  struct stat st;
  int status;

  for (;;) {
    if (command_wait (vm->cmd, START_POLL_MS, &status) == 0) {
      vm->exited = true;
      start_failed (vm, status);
      return -1;
    }
    if (errno != ETIMEDOUT) /* command_wait sets errno */ {
      vm->exited = true;
      return -1;
    }
    error_clear ();
    /* QEMU writes its pid file early; its monitor's socket comes once
     * the chardevs are made. */
    if (stat (vm->qmp_path, &st) == 0 && S_ISSOCK (st.st_mode)) {
      vm->c = qmp_client_connect (vm->qmp_path, timeout_ms, NULL);
      if (vm->c != NULL)
        return 0;
      if (get_errno () != ECONNREFUSED) { /* refused: not yet listening */
        /* QEMU that dies as it starts (a CPU model KVM refuses) breaks
         * the connection: its own message says why. */
        if (command_wait (vm->cmd, 2000, &status) == 0) {
          vm->exited = true;
          start_failed (vm, status);
        }
        return -1;
      }
    }
    if (deadline != -1 && deadline_remaining_ms (deadline) == 0) {
      set_error (ETIMEDOUT, "%s did not start in %d s", QEMU_PROGRAM,
                 timeout_ms / 1000);
      return -1;
    }
  }
}

/* The backup's chain for QEMU, disk by disk (JSON texts). */
static char **
chain_nodes (struct chain_repo *repo, const struct chain_manifest *m)
{
  chain_manifest_vector chain = empty_vector;
  char **nodes = calloc (m->disks.len, sizeof *nodes);
  bool ok = nodes != NULL;

  if (nodes == NULL)
    set_error (errno, "calloc");
  else if (chain_backup_chain (repo, m->vm, m->id, &chain) == -1)
    ok = false;
  for (size_t i = 0; ok && i < m->disks.len; i++)
    ok = (nodes[i] = chain_disk_qemu_json (repo, &chain, m->disks.ptr[i].name))
         != NULL;
  chain_manifest_vector_release (&chain);
  if (!ok && nodes != NULL) {
    for (size_t i = 0; i < m->disks.len; i++)
      free (nodes[i]);
    free (nodes);
    nodes = NULL;
  }
  return nodes;
}

static void
free_strings (char **v, size_t n)
{
  for (size_t i = 0; v != NULL && i < n; i++)
    free (v[i]);
  free (v);
}

struct backup_vm *
backup_vm_start (struct chain_repo *repo, const struct chain_manifest *m,
                 const char *definition, const struct backup_vm_options *o,
                 chain_string_vector *notes)
{
  struct backup_vm *vm = calloc (1, sizeof *vm);
  struct domain_info info;
  bool have_info = false;
  struct hardware hw = { .machine = NULL };
  char **backings = NULL;

  if (vm == NULL) {
    set_error (errno, "calloc");
    return NULL;
  }
  vm->owner_fd = -1;
  vm->keep = o->keep;
  vm->exited = true;
  if (definition != NULL) {
    if (domain_info_parse (definition, strlen (definition), &info) == -1) {
      error_prepend ("the VM's definition stored with the backup");
      goto fail;
    }
    have_info = true;
  }
  if (choose_hardware (have_info ? &info : NULL, o, &hw, notes) == -1)
    goto fail;
  vm->accel = hw.accel;
  backings = chain_nodes (repo, m);
  if (backings == NULL
      || make_dir (vm, o->scratch ? o->scratch : KNIB_DEFAULT_SCRATCH) == -1)
    goto fail;
  vm->overlays = calloc (m->disks.len, sizeof *vm->overlays);
  if (vm->overlays == NULL) {
    set_error (errno, "calloc");
    goto fail;
  }
  vm->n_overlays = m->disks.len;
  for (size_t i = 0; i < m->disks.len; i++) {
    CLEANUP_FREE char *image
      = chain_backup_image_path (repo, m, &m->disks.ptr[i]);

    vm->overlays[i] = image ? make_overlay (vm, m->disks.ptr[i].name, image,
                                            m->disks.ptr[i].virtual_size)
                            : NULL;
    if (vm->overlays[i] == NULL)
      goto fail;
  }
  vm->cmd
    = build_command (vm, &hw, have_info ? &info : NULL, m, backings, notes);
  if (vm->cmd == NULL || command_start (vm->cmd) == -1)
    goto fail;
  vm->exited = false;
  debug (DEBUG_CHAIN,
         "%s started (pid %ld, %s, %llu MiB, %u vCPUs, CPU %s) in %s",
         QEMU_PROGRAM, (long) command_pid (vm->cmd), hw.accel,
         (unsigned long long) hw.memory_mib, hw.cpus,
         hw.cpu ? hw.cpu : "default", vm->dir);
  if (wait_ready (vm, o->timeout_ms) == -1) {
    error_prepend ("machine '%s' (%s, %llu MiB, %u vCPUs)", hw.machine,
                   hw.accel, (unsigned long long) hw.memory_mib, hw.cpus);
    goto fail;
  }
  free_strings (backings, m->disks.len);
  free (hw.cpu);
  if (have_info)
    domain_info_release (&info);
  return vm;

fail:
  free_strings (backings, m->disks.len);
  free (hw.cpu);
  if (have_info)
    domain_info_release (&info);
  backup_vm_free (vm);
  return NULL;
}

int
backup_vm_power_on (struct backup_vm *vm)
{
  if (qmp_client_execute (vm->c, "cont", NULL, NULL) == -1)
    return -1;
  vm->powered_on = monotonic_seconds ();
  return 0;
}

double
backup_vm_uptime (const struct backup_vm *vm)
{
  return vm->powered_on > 0 ? monotonic_seconds () - vm->powered_on : 0;
}

struct qmp_client *
backup_vm_qmp (struct backup_vm *vm)
{
  return vm->c;
}

const char *
backup_vm_dir (const struct backup_vm *vm)
{
  return vm->dir;
}

const char *
backup_vm_agent_socket (const struct backup_vm *vm)
{
  return vm->agent_path;
}

const char *
backup_vm_console (const struct backup_vm *vm)
{
  return vm->console_path;
}

const char *
backup_vm_accel_used (const struct backup_vm *vm)
{
  return vm->accel;
}

const char *
backup_vm_owner_file (const struct backup_vm *vm)
{
  return vm->owner_path;
}

const char *
backup_vm_overlay (const struct backup_vm *vm, size_t i)
{
  return i < vm->n_overlays ? vm->overlays[i] : NULL;
}

bool
backup_vm_alive (struct backup_vm *vm, char **why)
{
  struct error_saved err;
  int status;

  *why = NULL;
  if (vm->exited)
    return false;
  error_save (&err);
  if (command_wait (vm->cmd, 0, &status) == 0) {
    const char *e = command_get_stderr (vm->cmd);
    int len = (int) strcspn (e, "\n");

    vm->exited = true;
    *why = command_term_signal (vm->cmd)
             ? str_printf ("%s was killed by signal %d", QEMU_PROGRAM,
                           command_term_signal (vm->cmd))
             : str_printf ("%s exited with status %d%s%.*s", QEMU_PROGRAM,
                           status, len > 0 ? ": " : "", len, e);
  }
  error_restore (&err);
  return !vm->exited;
}

void
backup_vm_stop (struct backup_vm *vm)
{
  struct error_saved err;

  error_save (&err);
  qmp_client_free (vm->c);
  vm->c = NULL;
  if (vm->cmd != NULL && !vm->exited && command_stop (vm->cmd) == -1)
    debug (DEBUG_CHAIN, "%s", get_error ());
  vm->exited = true;
  error_restore (&err);
}

void
backup_vm_free (struct backup_vm *vm)
{
  struct error_saved err;

  if (vm == NULL)
    return;
  error_save (&err);
  backup_vm_stop (vm);
  command_free (vm->cmd);
  /* --keep keeps what a VM that ran left; a start that failed leaves
   * nothing. */
  if (vm->keep && vm->powered_on == 0)
    vm->keep = false;
  if (vm->dir != NULL && !vm->keep && fs_remove_tree (vm->dir) == -1)
    debug (DEBUG_CHAIN, "%s", get_error ());
  if (vm->dir != NULL && vm->keep
      && fs_replace_file (vm->dir, KEPT_FILE, "", 0, "scratch") == -1)
    debug (DEBUG_CHAIN, "%s", get_error ());
  if (vm->owner_fd >= 0)
    close (vm->owner_fd);
  free (vm->dir);
  free (vm->qmp_path);
  free (vm->agent_path);
  free (vm->console_path);
  free (vm->pid_file);
  free (vm->owner_path);
  free_strings (vm->overlays, vm->n_overlays);
  free (vm);
  error_restore (&err);
}

/* ---- Leftovers of killed runs ---- */

/* Whether dir is a leftover: its owner lock is free (its run is gone),
 * or it has none and is older than a minute (a run that died while
 * making it). */
static bool
is_stale (const char *dir, int *fd)
{
  CLEANUP_FREE char *owner = str_printf ("%s/" OWNER_FILE, dir);
  struct stat st;

  CLEANUP_FREE char *kept = str_printf ("%s/" KEPT_FILE, dir);

  *fd = -1;
  if (owner == NULL || kept == NULL || access (kept, F_OK) == 0)
    return false;
  *fd = open (owner, O_RDWR | O_CLOEXEC);
  if (*fd == -1)
    return errno == ENOENT && stat (dir, &st) == 0
           && st.st_mtime + 60 < time (NULL);
  if (lock_owner (*fd) == 0)
    return true;
  close (*fd);
  *fd = -1;
  return false;
}

/* Stop the QEMU of a dead run, if it still runs. */
static int
reap_qemu (const char *dir)
{
  CLEANUP_FREE char *pid_file = str_printf ("%s/" PID_FILE, dir);
  CLEANUP_FREE char *text = NULL;
  int64_t pid;

  if (pid_file == NULL)
    return -1;
  text = fs_read_file (pid_file, "pid file", 64, NULL);
  if (text == NULL) {
    error_clear ();
    return 0;
  }
  text[strcspn (text, "\n")] = '\0';
  if (parse_int64 ("pid", text, 2, INT32_MAX, &pid) == -1) {
    error_clear ();
    return 0;
  }
  if (!backup_process_of ((pid_t) pid, QEMU_PROGRAM, dir))
    return 0;
  kill ((pid_t) pid, SIGKILL);
  if (!backup_process_wait_gone ((pid_t) pid, QEMU_PROGRAM, dir, 10000)) {
    set_error (-EBUSY, "%s (pid %ld) of a killed run does not stop",
               QEMU_PROGRAM, (long) pid);
    return -1;
  }
  return 0;
}

int
backup_vm_reap (const char *scratch, chain_string_vector *done)
{
  const char *root = scratch ? scratch : KNIB_DEFAULT_SCRATCH;
  DIR *d = opendir (root);
  struct dirent *e;
  int r = 0;

  if (d == NULL)
    return errno == ENOENT ? 0 : (set_error (errno, "scratch '%s'", root), -1);
  while (r == 0 && (e = readdir (d)) != NULL) {
    CLEANUP_FREE char *path = NULL;
    int fd;

    if (strncmp (e->d_name, VM_DIR_PREFIX, strlen (VM_DIR_PREFIX)) != 0
        || strlen (e->d_name) != strlen (VM_DIR_PREFIX) + 6)
      continue;
    path = str_printf ("%s/%s", root, e->d_name);
    if (path == NULL)
      r = -1;
    else if (is_stale (path, &fd)) {
      r = reap_qemu (path);
      if (r == 0)
        r = fs_remove_tree (path);
      if (fd >= 0)
        close (fd);
      if (r == 0)
        chain_note_add (
          done, str_printf ("removed the VM scratch files of a killed run: %s",
                            path));
    }
  }
  closedir (d);
  return r;
}
