/* SPDX-License-Identifier: Apache-2.0 */
/* test-domain.c: the domain XML, its -qmp edit, the hook's records, holds. */
#include <config.h>

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/error.h"
#include "domain/domain.h"

#define assert_contains(haystack, needle)                                      \
  do {                                                                         \
    const char *_h = (haystack), *_n = (needle);                               \
    if (_h == NULL || strstr (_h, _n) == NULL)                                 \
      fail_msg ("\"%s\" does not contain \"%s\"", _h ? _h : "(null)", _n);     \
  } while (0)

#define UUID "0f8c7a52-3d0e-4c39-9a5e-2d1b7c1e6a01"

static char run_dir[64];

static const char running_xml[]
  = "<domain type='kvm' id='3' "
    "xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>\n"
    "  <name>web01</name>\n"
    "  <uuid>" UUID "</uuid>\n"
    "  <devices>\n"
    "    <disk type='file' device='disk'>\n"
    "      <driver name='qemu' type='qcow2'/>\n"
    "      <source file='/images/web01.qcow2' index='2'/>\n"
    "      <target dev='vda' bus='virtio'/>\n"
    "      <alias name='virtio-disk0'/>\n"
    "    </disk>\n"
    "    <disk type='block' device='disk'>\n"
    "      <driver name='qemu' type='raw'/>\n"
    "      <source dev='/dev/vg/data'/>\n"
    "      <target dev='vdb' bus='virtio'/>\n"
    "      <alias name='ua-data'/>\n"
    "    </disk>\n"
    "    <disk type='network' device='disk'>\n"
    "      <source protocol='rbd' name='pool/img'/>\n"
    "      <target dev='vdc' bus='virtio'/>\n"
    "    </disk>\n"
    "    <disk type='file' device='cdrom'>\n"
    "      <target dev='hdc' bus='ide'/>\n"
    "      <readonly/>\n"
    "    </disk>\n"
    "    <channel type='unix'>\n"
    "      <source mode='bind' path='/run/agent.sock'/>\n"
    "      <target type='virtio' name='org.qemu.guest_agent.0'/>\n"
    "    </channel>\n"
    "  </devices>\n"
    "  <seclabel type='dynamic' model='dac' relabel='yes'>\n"
    "    <label>+64055:+107</label>\n"
    "  </seclabel>\n"
    "</domain>\n";

static const char inactive_xml[] = "<domain type='kvm'>\n"
                                   "  <name>web01</name>\n"
                                   "  <uuid>" UUID "</uuid>\n"
                                   "  <devices/>\n"
                                   "</domain>\n";

static void
parse_reads_disks_agent_and_label (void **state)
{
  struct domain_info info;
  const struct domain_disk *d;

  assert_int_equal (
    domain_info_parse (running_xml, strlen (running_xml), &info), 0);
  assert_string_equal (info.name, "web01");
  assert_string_equal (info.uuid, UUID);
  assert_int_equal (info.disks.len, 4);
  d = &info.disks.ptr[0];
  assert_string_equal (d->target, "vda");
  assert_string_equal (d->alias, "virtio-disk0");
  assert_string_equal (d->source, "/images/web01.qcow2");
  assert_string_equal (d->format, "qcow2");
  assert_false (d->readonly);
  assert_string_equal (info.disks.ptr[1].source, "/dev/vg/data");
  assert_null (info.disks.ptr[2].source);
  assert_string_equal (info.disks.ptr[2].type, "network");
  assert_string_equal (info.disks.ptr[3].device, "cdrom");
  assert_true (info.disks.ptr[3].readonly);
  assert_true (info.agent);
  assert_string_equal (info.agent_path, "/run/agent.sock");
  assert_true (info.dac_label);
  assert_int_equal (info.qemu_uid, 64055);
  assert_int_equal (info.qemu_gid, 107);
  assert_null (info.qmp);
  assert_ptr_equal (domain_info_find_alias (&info, "ua-data"),
                    &info.disks.ptr[1]);
  assert_null (domain_info_find_alias (&info, "nope"));
  domain_info_release (&info);
}

/* The hardware a VM made from the definition gets: machine, firmware,
 * memory in libvirt's units, vCPUs, buses and boot order. */
static void
parse_reads_hardware (void **state)
{
  static const char xml[]
    = "<domain type='kvm'>\n"
      "  <name>win</name>\n"
      "  <memory unit='GiB'>2</memory>\n"
      "  <vcpu placement='static'>4</vcpu>\n"
      "  <os firmware='efi'>\n"
      "    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>\n"
      "    <loader readonly='yes' secure='yes' type='pflash'>"
      "/usr/share/OVMF/OVMF_CODE_4M.ms.fd</loader>\n"
      "    <nvram template='/usr/share/OVMF/OVMF_VARS_4M.ms.fd'>"
      "/var/lib/libvirt/qemu/nvram/win_VARS.fd</nvram>\n"
      "  </os>\n"
      "  <devices>\n"
      "    <disk type='file' device='disk'>\n"
      "      <target dev='sda' bus='sata'/>\n"
      "      <boot order='2'/>\n"
      "    </disk>\n"
      "    <disk type='file' device='disk'>\n"
      "      <target dev='vda' bus='virtio'/>\n"
      "      <boot order='1'/>\n"
      "    </disk>\n"
      "  </devices>\n"
      "</domain>\n";
  static const char kernel_xml[]
    = "<domain><name>k</name><memory>524288</memory>\n"
      "  <os><type>hvm</type><kernel>/boot/vmlinuz</kernel>\n"
      "  <initrd>/boot/initrd.img</initrd>\n"
      "  <cmdline>root=/dev/vda1 console=ttyS0</cmdline></os>\n"
      "</domain>\n";
  struct domain_info info;

  (void) state;
  assert_int_equal (domain_info_parse (xml, strlen (xml), &info), 0);
  assert_string_equal (info.machine, "pc-q35-7.2");
  assert_string_equal (info.firmware, "efi");
  assert_string_equal (info.loader, "/usr/share/OVMF/OVMF_CODE_4M.ms.fd");
  assert_string_equal (info.loader_type, "pflash");
  assert_true (info.loader_secure);
  assert_string_equal (info.nvram_template,
                       "/usr/share/OVMF/OVMF_VARS_4M.ms.fd");
  assert_int_equal (info.memory_kib, 2 * 1024 * 1024);
  assert_int_equal (info.vcpus, 4);
  assert_string_equal (info.disks.ptr[0].bus, "sata");
  assert_int_equal (info.disks.ptr[0].boot, 2);
  assert_string_equal (info.disks.ptr[1].bus, "virtio");
  assert_int_equal (info.disks.ptr[1].boot, 1);
  assert_null (info.kernel);
  domain_info_release (&info);

  assert_int_equal (domain_info_parse (kernel_xml, strlen (kernel_xml), &info),
                    0);
  assert_int_equal (info.memory_kib, 524288); /* KiB without a unit */
  assert_int_equal (info.vcpus, 0);
  assert_null (info.machine);
  assert_null (info.firmware);
  assert_string_equal (info.kernel, "/boot/vmlinuz");
  assert_string_equal (info.initrd, "/boot/initrd.img");
  assert_string_equal (info.cmdline, "root=/dev/vda1 console=ttyS0");
  domain_info_release (&info);
}

static void
parse_refuses_what_is_not_a_domain (void **state)
{
  static const char *bad[] = {
    "",
    "<domain><name>x",
    "<network><name>x</name></network>",
    "<domain><uuid>" UUID "</uuid></domain>",
    "<domain><name>x</name><devices><disk type='file'/></devices></domain>",
    "<!DOCTYPE d [<!ENTITY e SYSTEM 'file:///etc/passwd'>]>"
    "<domain><name>&e;</name></domain>",
  };
  struct domain_info info;
  size_t i;

  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int r = domain_info_parse (bad[i], strlen (bad[i]), &info);

    if (r == 0) {
      /* The entity is never expanded: no file is read. */
      assert_int_equal (i, 5);
      assert_null (strstr (info.name, "root:"));
      domain_info_release (&info);
      continue;
    }
    assert_int_equal (r, -1);
  }
}

static void
set_qmp_adds_once_and_removes (void **state)
{
  const char *sock = "/run/knib/qmp/" UUID ".sock";
  struct domain_info info;
  char *on = NULL, *again = NULL, *off = NULL;

  setenv ("KNIB_RUN_DIR", "/run/knib", 1);
  assert_int_equal (
    domain_xml_set_qmp (inactive_xml, strlen (inactive_xml), sock, true, &on),
    0);
  assert_non_null (on);
  assert_contains (on, "xmlns:qemu=\"http://libvirt.org/schemas/domain/qemu/"
                       "1.0\"");
  assert_contains (on, "<qemu:arg value=\"-qmp\"/>");
  assert_contains (on, "unix:/run/knib/qmp/" UUID ".sock,server=on,wait=off");
  assert_int_equal (domain_info_parse (on, strlen (on), &info), 0);
  assert_string_equal (info.qmp, sock);
  domain_info_release (&info);
  /* Idempotent. */
  assert_int_equal (domain_xml_set_qmp (on, strlen (on), sock, true, &again),
                    0);
  assert_null (again);
  assert_int_equal (domain_xml_set_qmp (on, strlen (on), sock, false, &off), 0);
  assert_non_null (off);
  assert_null (strstr (off, "-qmp"));
  assert_null (strstr (off, "commandline"));
  free (again);
  assert_int_equal (domain_xml_set_qmp (off, strlen (off), sock, false, &again),
                    0);
  assert_null (again);
  free (on);
  free (off);
  setenv ("KNIB_RUN_DIR", run_dir, 1);
}

static void
qmp_socket_wants_a_uuid (void **state)
{
  char *s = domain_qmp_socket (UUID);

  assert_non_null (s);
  assert_contains (s, "/qmp/" UUID ".sock");
  free (s);
  assert_null (domain_qmp_socket ("../../etc/passwd"));
  assert_null (domain_qmp_socket (NULL));
}

static void
records_round_trip (void **state)
{
  struct domain_record r = { .state = DOMAIN_STATE_RUNNING, .updated = 42 };
  struct domain_record *back;
  char *xml;

  assert_int_equal (
    domain_info_parse (running_xml, strlen (running_xml), &r.info), 0);
  assert_int_equal (domain_record_save (&r), 0);
  assert_int_equal (
    domain_xml_save ("web01", running_xml, strlen (running_xml)), 0);
  back = domain_record_load ("web01");
  assert_non_null (back);
  assert_int_equal (back->state, DOMAIN_STATE_RUNNING);
  assert_int_equal (back->updated, 42);
  assert_string_equal (back->info.uuid, UUID);
  assert_int_equal (back->info.disks.len, 4);
  assert_string_equal (back->info.disks.ptr[1].alias, "ua-data");
  assert_true (back->info.agent);
  assert_int_equal (back->info.qemu_uid, 64055);
  domain_record_free (back);
  xml = domain_xml_load ("web01");
  assert_string_equal (xml, running_xml);
  free (xml);
  domain_info_release (&r.info);

  assert_null (domain_record_load ("web02"));
  assert_int_equal (get_errno (), ENOENT);
  assert_null (domain_record_load ("../web01"));
}

/* Holds: a child process takes one and waits; while it lives the hold
 * is found, then not. */
static void
holds_are_found_while_their_process_lives (void **state)
{
  const char *mine[] = { "/images/a.qcow2", "/images/b.qcow2" };
  const char *other[] = { "/images/c.qcow2" };
  struct domain_holder who;
  int ready[2], go[2];
  char c;
  pid_t pid;

  char stale[128];
  FILE *fp;

  /* A killed backup's hold: swept by the next one. */
  snprintf (stale, sizeof stale, "%s/offline", run_dir);
  assert_int_equal (domain_make_dir (stale, 0700), 0);
  snprintf (stale, sizeof stale, "%s/offline/old.999999999.hold", run_dir);
  fp = fopen (stale, "w");
  assert_non_null (fp);
  fprintf (fp, "pid 999999999\nvm old\nimage /images/a.qcow2\n");
  fclose (fp);
  assert_int_equal (domain_hold_find (mine, 1, &who), 0);

  assert_int_equal (pipe (ready), 0);
  assert_int_equal (pipe (go), 0);
  pid = fork ();
  assert_true (pid >= 0);
  if (pid == 0) {
    struct domain_hold *h = domain_hold_take ("web01", mine, 2);

    if (write (ready[1], h ? "y" : "n", 1) != 1 || read (go[0], &c, 1) != 1)
      _exit (2);
    domain_hold_release (h);
    _exit (0);
  }
  assert_int_equal (read (ready[0], &c, 1), 1);
  assert_int_equal (c, 'y');
  assert_int_equal (access (stale, F_OK), -1);
  assert_int_equal (domain_hold_find (other, 1, &who), 0);
  assert_int_equal (domain_hold_find (mine + 1, 1, &who), 1);
  assert_int_equal (who.pid, pid);
  assert_string_equal (who.vm, "web01");
  assert_string_equal (who.image, "/images/b.qcow2");
  assert_int_equal (write (go[1], "x", 1), 1);
  assert_int_equal (waitpid (pid, NULL, 0), pid);
  assert_int_equal (domain_hold_find (mine, 2, &who), 0);
  close (ready[0]);
  close (ready[1]);
  close (go[0]);
  close (go[1]);
}

static int
setup (void **state)
{
  snprintf (run_dir, sizeof run_dir, "/tmp/knib-test-domain.XXXXXX");
  if (mkdtemp (run_dir) == NULL)
    return -1;
  setenv ("KNIB_RUN_DIR", run_dir, 1);
  setenv ("KNIB_STATE_DIR", run_dir, 1);
  return 0;
}

static int
teardown (void **state)
{
  char cmd[128];

  snprintf (cmd, sizeof cmd, "rm -rf '%s'", run_dir);
  return system (cmd) == 0 ? 0 : -1;
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (parse_reads_disks_agent_and_label),
    cmocka_unit_test (parse_reads_hardware),
    cmocka_unit_test (parse_refuses_what_is_not_a_domain),
    cmocka_unit_test (set_qmp_adds_once_and_removes),
    cmocka_unit_test (qmp_socket_wants_a_uuid),
    cmocka_unit_test (records_round_trip),
    cmocka_unit_test (holds_are_found_while_their_process_lives),
  };

  return cmocka_run_group_tests (tests, setup, teardown);
}
