/* SPDX-License-Identifier: Apache-2.0 */
/* test-backup-validate.c: the VGA text screen, dead ends, console tails and base64 of boot validation. */
#include <config.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backup/internal.h"
#include "common/base64.h"
#include "common/error.h"

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

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_screen_text),
    cmocka_unit_test (test_dead_ends),
    cmocka_unit_test (test_tail_lines),
    cmocka_unit_test (test_base64),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
