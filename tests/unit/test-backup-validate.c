/* SPDX-License-Identifier: Apache-2.0 */
/* test-backup-validate.c: the VGA text screen, dead ends, console tails and base64 of boot validation, and the validation VM's CPU and disk buses from domain XMLs. */
#include <config.h>

#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backup/internal.h"
#include "common/base64.h"
#include "common/error.h"
#include "domain/domain.h"

/* An 80x25 text buffer with these lines (attribute 0x07). */
static void
screen (unsigned char buf[4000], const char *const *lines)
{
  memset (buf, 0, 4000);
  for (size_t r = 0; lines[r] != NULL; r++)
    for (size_t c = 0; lines[r][c] != '\0' && c < 80; c++) {
      buf[(r * 80 + c) * 2] = (unsigned char) lines[r][c];
      buf[(r * 80 + c) * 2 + 1] = 0x07;
    }
}

static void
test_screen_text (void **state)
{
  static const char *const lines[] = {
    "SeaBIOS (version 1.16.2)",
    "",
    "Booting from Hard Disk...",
    "Boot failed: not a bootable disk",
    "",
    "No bootable device.  Retrying in 60 seconds.",
    NULL,
  };
  unsigned char buf[4000];
  char *text, *end;

  (void) state;
  screen (buf, lines);
  buf[2 * 2] = 0xdb; /* a block character: a blank */
  text = validate_screen_text (buf, sizeof buf);
  assert_non_null (text);
  assert_string_equal (text, "Se BIOS (version 1.16.2)\n\nBooting from Hard "
                             "Disk...\nBoot failed: not a bootable disk\n\nNo "
                             "bootable device.  Retrying in 60 seconds.");
  end = validate_dead_end (text);
  assert_non_null (end);
  /* The last dead end on the screen, as its whole line. */
  assert_string_equal (end, "No bootable device.  Retrying in 60 seconds.");
  free (end);
  free (text);

  /* A short buffer: the rows it has. */
  text = validate_screen_text (buf, 160);
  assert_non_null (text);
  assert_string_equal (text, "Se BIOS (version 1.16.2)");
  free (text);
}

static void
test_dead_ends (void **state)
{
  char *end;

  (void) state;
  assert_null (validate_dead_end ("Booting from Hard Disk...\nLoading "
                                  "Linux...\n"));
  /* One boot option failed; SeaBIOS goes on to the next. */
  assert_null (validate_dead_end ("Booting from Hard Disk...\nBoot failed: "
                                  "not a bootable disk\n\nBooting from Hard "
                                  "Disk...\n"));
  end = validate_dead_end ("GRUB loading.\nerror: unknown filesystem.\n"
                           "Entering rescue mode...\ngrub rescue> ");
  assert_non_null (end);
  assert_string_equal (end, "grub rescue> ");
  free (end);
  end = validate_dead_end ("[    1.5] VFS: Cannot open root device\r\n[    "
                           "1.6] Kernel panic - not syncing: VFS: Unable to "
                           "mount root fs\r\n[    1.7] CPU: 0 PID: 1\r\n");
  assert_non_null (end);
  assert_string_equal (end, "[    1.6] Kernel panic - not syncing: VFS: "
                            "Unable to mount root fs");
  free (end);
}

static void
test_tail_lines (void **state)
{
  chain_string_vector lines = empty_vector;

  (void) state;
  assert_int_equal (validate_tail_lines ("one\r\n\x1b[1;31mtwo\x1b[0m\r\n\r\n"
                                         "  three\tand\x07 more  \n\n",
                                         2, &lines),
                    0);
  assert_int_equal (lines.len, 2);
  assert_string_equal (lines.ptr[0], "two");
  assert_string_equal (lines.ptr[1], "three and more");
  chain_string_vector_release (&lines);
  assert_int_equal (validate_tail_lines ("a\nb\nc", 10, &lines), 0);
  assert_int_equal (lines.len, 3);
  assert_string_equal (lines.ptr[0], "a");
  assert_string_equal (lines.ptr[2], "c");
  chain_string_vector_release (&lines);
  assert_int_equal (validate_tail_lines ("", 5, &lines), 0);
  assert_int_equal (lines.len, 0);
}

static void
test_base64 (void **state)
{
  static const struct {
    const char *in, *out;
  } cases[] = {
    { "", "" },          { "Zg==", "f" },        { "Zm8=", "fo" },
    { "Zm9v", "foo" },   { "Zm9vYg==", "foob" }, { "Zm9vYmFy", "foobar" },
    { "YSxi\n", "a,b" }, { "Zm9vYg", "foob" },
  };
  size_t len;
  char *out;

  (void) state;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    out = base64_decode (cases[i].in, &len);
    assert_non_null (out);
    assert_int_equal (len, strlen (cases[i].out));
    assert_string_equal (out, cases[i].out);
    free (out);
  }
  out = base64_decode ("Zm9v!", &len);
  assert_null (out);
  assert_non_null (strstr (get_error (), "malformed base64"));
  /* Bytes that are not text come through whole. */
  out = base64_decode ("AP8A", &len);
  assert_non_null (out);
  assert_int_equal (len, 3);
  assert_memory_equal (out, "\0\xff\0", 3);
  free (out);
  /* Encoding, padded, round-trips (the first six cases are canonical). */
  for (size_t i = 0; i < 6; i++) {
    out = base64_encode (cases[i].out, strlen (cases[i].out));
    assert_non_null (out);
    assert_string_equal (out, cases[i].in);
    free (out);
  }
  out = base64_encode ("\0\xff\0\x80", 4);
  assert_string_equal (out, "AP8AgA==");
  free (out);
}

/* A domain XML with this <cpu> (may be "") and machine. */
static void
parse_domain (const char *cpu, const char *machine, struct domain_info *d)
{
  char xml[2048];

  snprintf (xml, sizeof xml,
            "<domain type='kvm'><name>t</name>"
            "<os><type arch='x86_64' machine='%s'>hvm</type></os>%s"
            "<devices/></domain>",
            machine, cpu);
  assert_int_equal (domain_info_parse (xml, strlen (xml), d), 0);
}

/* The -cpu option (NULL: none) and whether a note came, for <cpu>
 * under accel, nested or not. */
static void
expect_cpu (const char *cpu_xml, const char *accel, bool nested,
            const char *want, bool note)
{
  struct domain_info d;
  char *cpu, *why;

  parse_domain (cpu_xml, "pc", &d);
  assert_int_equal (backup_vm_cpu_option (&d, accel, nested, &cpu, &why), 0);
  if (want == NULL)
    assert_null (cpu);
  else
    assert_string_equal (cpu, want);
  assert_true ((why != NULL) == note);
  free (cpu);
  free (why);
  domain_info_release (&d);
}

static void
test_cpu (void **state)
{
  static const char *const passthrough = "<cpu mode='host-passthrough'/>";
  static const char *const custom
    = "<cpu mode='custom' match='exact'>"
      "<model fallback='forbid'>Haswell-noTSX</model>"
      "<feature policy='require' name='pcid'/>"
      "<feature policy='optional' name='vmx'/>"
      "<feature policy='disable' name='hle'/>"
      "<feature policy='forbid' name='rtm'/>"
      "<feature policy='force' name='aes'/></cpu>";
  struct domain_info d;
  char *cpu, *note;

  (void) state;
  /* Nothing asked: the host's CPU under KVM, not nested. */
  expect_cpu ("", "kvm", false, "host", false);
  expect_cpu ("", "kvm", true, NULL, false);
  expect_cpu ("", "tcg", false, NULL, false);
  /* The host's CPU: KVM only, else the default with a note. */
  expect_cpu (passthrough, "kvm", false, "host", false);
  expect_cpu (passthrough, "tcg", false, NULL, true);
  expect_cpu (passthrough, "kvm", true, NULL, true);
  expect_cpu ("<cpu mode='host-model'/>", "kvm", false, "host", false);
  expect_cpu ("<cpu mode='host-model'/>", "tcg", false, NULL, true);
  expect_cpu ("<cpu mode='maximum'/>", "tcg", false, "max", false);
  /* A model with its features, under either accelerator. */
  expect_cpu (custom, "tcg", false,
              "Haswell-noTSX,pcid=on,hle=off,rtm=off,aes=on", false);
  expect_cpu (custom, "kvm", false,
              "Haswell-noTSX,pcid=on,hle=off,rtm=off,aes=on", false);
  expect_cpu ("<cpu><model>qemu64</model></cpu>", "kvm", true, "qemu64", false);
  expect_cpu ("<cpu mode='custom'/>", "tcg", false, NULL, false);

  /* What cannot be given, or would end QEMU's option early. */
  parse_domain ("<cpu mode='host-everything'/>", "pc", &d);
  assert_int_equal (backup_vm_cpu_option (&d, "tcg", false, &cpu, &note), -1);
  assert_non_null (strstr (get_error (), "CPU mode 'host-everything'"));
  domain_info_release (&d);
  parse_domain ("<cpu><model>Haswell,kvm=off</model></cpu>", "pc", &d);
  assert_int_equal (backup_vm_cpu_option (&d, "tcg", false, &cpu, &note), -1);
  assert_non_null (strstr (get_error (), "'Haswell,kvm=off'"));
  domain_info_release (&d);
  parse_domain ("<cpu><model>Haswell</model>"
                "<feature policy='maybe' name='pcid'/></cpu>",
                "pc", &d);
  assert_int_equal (backup_vm_cpu_option (&d, "tcg", false, &cpu, &note), -1);
  assert_non_null (strstr (get_error (), "policy 'maybe'"));
  domain_info_release (&d);
}

static void
test_disk_buses (void **state)
{
  struct backup_vm_buses b = { .ahci = false };
  char *dev, *note;

  (void) state;
  /* IDE on an i440FX machine: its own controller, by target letter. */
  dev = backup_vm_disk_device ("pc-i440fx-7.2", "hda", "ide", "n0", 0, 1, &b,
                               &note);
  assert_string_equal (dev, "ide-hd,drive=n0,bus=ide.0,unit=0,id=knib-dev-0,"
                            "bootindex=1");
  assert_null (note);
  free (dev);
  dev = backup_vm_disk_device ("pc", "hdd", "ide", "n1", 1, 0, &b, &note);
  assert_string_equal (dev, "ide-hd,drive=n1,bus=ide.1,unit=1,id=knib-dev-1");
  free (dev);
  assert_false (b.ahci);
  assert_null (
    backup_vm_disk_device ("pc", "hde", "ide", "n2", 2, 0, &b, &note));
  assert_non_null (strstr (get_error (), "hda to hdd"));
  /* IDE on q35 (none there): SATA, and a note says so. */
  dev
    = backup_vm_disk_device ("pc-q35-7.2", "hda", "ide", "n0", 0, 0, &b, &note);
  assert_string_equal (dev, "ide-hd,drive=n0,bus=knib-ahci.0,id=knib-dev-0");
  assert_non_null (note);
  assert_non_null (strstr (note, "as a SATA disk"));
  assert_true (b.ahci);
  free (note);
  free (dev);
  dev = backup_vm_disk_device ("q35", "sdb", "sata", "n1", 1, 0, &b, &note);
  assert_string_equal (dev, "ide-hd,drive=n1,bus=knib-ahci.1,id=knib-dev-1");
  assert_null (note);
  free (dev);
  dev = backup_vm_disk_device ("pc", "vda", "virtio", "n2", 2, 2, &b, &note);
  assert_string_equal (dev, "virtio-blk-pci,drive=n2,id=knib-dev-2,"
                            "bootindex=2");
  free (dev);
  dev = backup_vm_disk_device ("pc", "sdc", "scsi", "n3", 3, 0, &b, &note);
  assert_string_equal (dev, "scsi-hd,drive=n3,bus=knib-scsi.0,id=knib-dev-3");
  assert_true (b.scsi);
  free (dev);
  assert_null (
    backup_vm_disk_device ("pc", "fda", "fdc", "n4", 4, 0, &b, &note));
  assert_non_null (strstr (get_error (), "bus 'fdc'"));
}

static void
test_machine (void **state)
{
  static const char help[]
    = "Supported machines are:\n"
      "microvm              microvm (i386)\n"
      "pc                   Standard PC (i440FX + PIIX, 1996) (alias of "
      "pc-i440fx-7.2)\n"
      "pc-i440fx-7.2        Standard PC (i440FX + PIIX, 1996) (default)\n"
      "q35                  Standard PC (Q35 + ICH9, 2009) (alias of "
      "pc-q35-7.2)\n"
      "pc-q35-7.2           Standard PC (Q35 + ICH9, 2009)\n"
      "pc-q35-7.1           Standard PC (Q35 + ICH9, 2009)\n";
  const char *use;
  char *note;

  (void) state;
  /* Known: as it is. */
  assert_int_equal (backup_vm_machine ("pc-q35-7.1", help, &use, &note), 0);
  assert_string_equal (use, "pc-q35-7.1");
  assert_null (note);
  assert_int_equal (backup_vm_machine ("pc", help, &use, &note), 0);
  assert_string_equal (use, "pc");
  assert_null (note);
  /* A newer QEMU's: the family's current type, said. */
  assert_int_equal (backup_vm_machine ("pc-q35-9.2", help, &use, &note), 0);
  assert_string_equal (use, "q35");
  assert_non_null (strstr (note, "no machine type 'pc-q35-9.2'"));
  free (note);
  assert_int_equal (backup_vm_machine ("pc-i440fx-9.2", help, &use, &note), 0);
  assert_string_equal (use, "pc");
  free (note);
  assert_int_equal (backup_vm_machine ("pc-1.0", help, &use, &note), 0);
  assert_string_equal (use, "pc");
  free (note);
  /* "pc-q35-7" is not "pc-q35-7.2"; another family is left to QEMU. */
  assert_int_equal (backup_vm_machine ("pc-q35-7", help, &use, &note), 0);
  assert_string_equal (use, "q35");
  free (note);
  assert_int_equal (backup_vm_machine ("virt", help, &use, &note), 0);
  assert_string_equal (use, "virt");
  assert_null (note);
  /* Without the list: as it is. */
  assert_int_equal (backup_vm_machine ("pc-q35-9.2", NULL, &use, &note), 0);
  assert_string_equal (use, "pc-q35-9.2");
  assert_null (note);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_screen_text), cmocka_unit_test (test_dead_ends),
    cmocka_unit_test (test_tail_lines),  cmocka_unit_test (test_base64),
    cmocka_unit_test (test_cpu),         cmocka_unit_test (test_disk_buses),
    cmocka_unit_test (test_machine),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
