/* SPDX-License-Identifier: Apache-2.0 */
/* test-qmp-framer.c: QMP line framing and message classification, no socket. */
#include <config.h>

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "common/error.h"
#include "qmp/internal.h"

#define assert_contains(haystack, needle)                                      \
  do {                                                                         \
    const char *_h = (haystack), *_n = (needle);                               \
    if (_h == NULL || strstr (_h, _n) == NULL)                                 \
      fail_msg ("\"%s\" does not contain \"%s\"", _h ? _h : "(null)", _n);     \
  } while (0)

#define GREETING_72                                                            \
  "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, "           \
  "\"major\": 7}, \"package\": \"Debian 1:7.2+dfsg-7+deb12u5\"}, "             \
  "\"capabilities\": [\"oob\"]}}"

/* Take the next line and check it. */
static void
expect_line (struct qmp_framer *f, const char *want)
{
  char *line = NULL;
  size_t len = 0;

  assert_int_equal (qmp_framer_next (f, &line, &len), 1);
  assert_string_equal (line, want);
  assert_int_equal (len, strlen (want));
  free (line);
}

static void
expect_no_line (struct qmp_framer *f)
{
  char *line = NULL;
  size_t len = 0;

  assert_int_equal (qmp_framer_next (f, &line, &len), 0);
  assert_null (line);
}

static void
feed (struct qmp_framer *f, const char *text)
{
  assert_int_equal (qmp_framer_feed (f, text, strlen (text)), 0);
}

/* The framer */

static void
framer_splits_several_messages_in_one_feed (void **state)
{
  struct qmp_framer f;

  qmp_framer_init (&f, QMP_MAX_LINE);
  feed (&f, "{\"a\": 1}\n{\"b\": 2}\n{\"c\":");
  expect_line (&f, "{\"a\": 1}");
  expect_line (&f, "{\"b\": 2}");
  expect_no_line (&f);
  assert_true (qmp_framer_partial (&f));
  feed (&f, " 3}\n");
  expect_line (&f, "{\"c\": 3}");
  expect_no_line (&f);
  assert_false (qmp_framer_partial (&f));
  qmp_framer_release (&f);
}

static void
framer_joins_a_message_fed_byte_by_byte (void **state)
{
  struct qmp_framer f;
  const char *text = GREETING_72 "\r\n";

  qmp_framer_init (&f, QMP_MAX_LINE);
  for (size_t i = 0; text[i] != '\0'; i++) {
    expect_no_line (&f);
    assert_int_equal (qmp_framer_feed (&f, &text[i], 1), 0);
  }
  expect_line (&f, GREETING_72);
  expect_no_line (&f);
  qmp_framer_release (&f);
}

static void
framer_skips_blank_lines_and_strips_crlf (void **state)
{
  struct qmp_framer f;

  qmp_framer_init (&f, QMP_MAX_LINE);
  feed (&f, "\n\r\n  \t \r\n{\"a\": 1}\r\n\n \n{\"b\": \"x\\r\"}\n\r\n");
  expect_line (&f, "{\"a\": 1}");
  expect_line (&f, "{\"b\": \"x\\r\"}");
  expect_no_line (&f);
  assert_false (qmp_framer_partial (&f));
  qmp_framer_release (&f);
}

static void
framer_feed_of_nothing_changes_nothing (void **state)
{
  struct qmp_framer f;

  qmp_framer_init (&f, 16);
  assert_int_equal (qmp_framer_feed (&f, "", 0), 0);
  expect_no_line (&f);
  assert_false (qmp_framer_partial (&f));
  qmp_framer_release (&f);
}

static void
framer_hands_out_a_4_mib_line (void **state)
{
  const size_t size = 4 * 1024 * 1024;
  const char *head = "{\"return\": \"", *tail = "\", \"id\": \"knib-9\"}";
  char *text = malloc (size + 1), *line = NULL;
  struct qmp_framer f;
  size_t len = 0, chunk = 65536;
  json_t *msg;

  assert_non_null (text);
  memset (text, 'x', size);
  memcpy (text, head, strlen (head));
  memcpy (text + size - strlen (tail), tail, strlen (tail));
  text[size] = '\n';
  qmp_framer_init (&f, QMP_MAX_LINE);
  for (size_t off = 0; off < size + 1; off += chunk) {
    size_t n = size + 1 - off < chunk ? size + 1 - off : chunk;

    expect_no_line (&f);
    assert_int_equal (qmp_framer_feed (&f, text + off, n), 0);
  }
  assert_int_equal (qmp_framer_next (&f, &line, &len), 1);
  assert_int_equal (len, size);
  assert_memory_equal (line, text, size);
  msg = qmp_message_parse (line, len);
  assert_non_null (msg);
  assert_int_equal (json_string_length (json_object_get (msg, "return")),
                    size - strlen (head) - strlen (tail));
  json_decref (msg);
  free (line);
  free (text);
  qmp_framer_release (&f);
}

static void
framer_takes_a_line_of_exactly_max_line (void **state)
{
  struct qmp_framer f;

  qmp_framer_init (&f, 16);
  feed (&f, "{\"abcdefghijk\":1");
  feed (&f, "\r");
  feed (&f, "\n{\"abcdefghij\":2}\n");
  expect_line (&f, "{\"abcdefghijk\":1");
  expect_line (&f, "{\"abcdefghij\":2}");
  qmp_framer_release (&f);
}

static void
framer_refuses_an_unfinished_line_longer_than_max_line (void **state)
{
  struct qmp_framer f;

  qmp_framer_init (&f, 16);
  feed (&f, "{\"a\": \"0123456");
  assert_int_equal (qmp_framer_feed (&f, "789abcdef\"}", 11), -1);
  assert_int_equal (get_errno (), EMSGSIZE);
  assert_string_equal (get_error (),
                       "message longer than 16 bytes: Message too long");
  qmp_framer_release (&f);
}

static void
framer_refuses_a_whole_line_longer_than_max_line (void **state)
{
  struct qmp_framer f;
  char *line = NULL;
  size_t len = 0;

  qmp_framer_init (&f, 16);
  feed (&f, "{\"ok\": 1}\n{\"abcdefghijkl\": 1}\n");
  expect_line (&f, "{\"ok\": 1}");
  assert_int_equal (qmp_framer_next (&f, &line, &len), -1);
  assert_null (line);
  assert_int_equal (get_errno (), EMSGSIZE);
  qmp_framer_release (&f);
}

static void
framer_bounds_only_the_unfinished_line (void **state)
{
  struct qmp_framer f;

  /* Three whole lines and a start, more than max_line together. */
  qmp_framer_init (&f, 16);
  feed (&f, "{\"a\": 1}\n{\"b\": 2}\n{\"c\": 3}\n{\"d\":");
  feed (&f, " 4}");
  expect_line (&f, "{\"a\": 1}");
  expect_line (&f, "{\"b\": 2}");
  expect_line (&f, "{\"c\": 3}");
  expect_no_line (&f);
  feed (&f, "\n");
  expect_line (&f, "{\"d\": 4}");
  qmp_framer_release (&f);
}

static void
framer_partial_says_whether_a_line_is_unfinished (void **state)
{
  struct qmp_framer f;
  char *line = NULL;
  size_t len;

  qmp_framer_init (&f, QMP_MAX_LINE);
  assert_false (qmp_framer_partial (&f));
  feed (&f, "{}\n");
  assert_false (qmp_framer_partial (&f)); /* whole, not yet taken */
  feed (&f, " \r");
  assert_false (qmp_framer_partial (&f)); /* blanks only */
  feed (&f, "{");
  assert_true (qmp_framer_partial (&f));
  assert_int_equal (qmp_framer_next (&f, &line, &len), 1);
  free (line);
  assert_true (qmp_framer_partial (&f));
  feed (&f, "}\n");
  assert_false (qmp_framer_partial (&f));
  qmp_framer_release (&f);
}

static void
framer_release_frees_what_is_held (void **state)
{
  struct qmp_framer f;

  qmp_framer_init (&f, QMP_MAX_LINE);
  feed (&f, "{\"a\": 1}\n{\"b\"");
  qmp_framer_release (&f);
  assert_null (f.buf);
  assert_int_equal (f.len, 0);
  qmp_framer_release (&f);
}

/* qmp_message_parse */

static void
parse_refuses_invalid_json (void **state)
{
  static const char *const bad[] = {
    "{\"a\": }",
    "{\"a\": 1",
    "{\"a\": 1,}",
    "{\"a\" 1}",
    "{a: 1}",
    "{\"a\": tru}",
    "{\"a\": nul}",
    "{\"a\": 01}",
    "{\"a\": 1.}",
    "{\"a\": .5}",
    "{\"a\": -}",
    "{\"a\": +1}",
    "{\"a\": 1e}",
    "{\"a\": \"unterminated}",
    "{\"a\": \"tab\there\"}",
    "{\"a\": \"\\q\"}",
    "{\"a\": \"\\u12\"}",
    "{\"a\": \"\\ud800\"}",
    "{\"a\": \"\\ud800\\u0041\"}",
    "{\"a\": \"\\udc00\"}",
    "{\"a\": [1, 2}",
    "{} {}",
    "{\"a\": 1} x",
    "{\"a\": 1, \"a\": 2}",
    "{\"a\": \"\xff\"}",
    "{\"a\": 99999999999999999999999}",
    "",
    "   ",
    "}",
    "@",
  };

  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    json_t *msg = qmp_message_parse (bad[i], strlen (bad[i]));

    if (msg != NULL)
      fail_msg ("'%s' was accepted", bad[i]);
    if (get_errno () != EPROTO)
      fail_msg ("'%s': errno %d, %s", bad[i], get_errno (), get_error ());
    assert_contains (get_error (), "invalid JSON from QEMU");
  }
}

static void
parse_refuses_a_value_that_is_not_an_object (void **state)
{
  static const char *const bad[] = { "[1, 2]", "[]", "1", "\"text\"", "null" };

  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_null (qmp_message_parse (bad[i], strlen (bad[i])));
    assert_int_equal (get_errno (), EPROTO);
  }
  assert_null (qmp_message_parse ("[1, 2]", 6));
  assert_string_equal (
    get_error (),
    "message from QEMU is not a JSON object: [1, 2]: Protocol error");
}

static void
parse_reads_only_len_bytes (void **state)
{
  const char *text = "{\"a\": 1}garbage";
  json_t *msg = qmp_message_parse (text, 8);

  assert_non_null (msg);
  assert_int_equal (json_integer_value (json_object_get (msg, "a")), 1);
  json_decref (msg);
}

static void
parse_accepts_escapes_numbers_and_literals (void **state)
{
  const char *text
    = " {\"s\": \"\\u00e9\\ud83d\\ude00\\\"\\\\\\/\\b\\f\\n\\r\\t\","
      " \"n\": [-0, -0.5e+3, 1E-2, 0, 12], \"l\": [true, false, "
      "null], \"o\": {\"\": {}}, \"a\": [[]]} ";
  json_t *msg = qmp_message_parse (text, strlen (text));

  assert_non_null (msg);
  assert_string_equal (json_string_value (json_object_get (msg, "s")),
                       "\xc3\xa9\xf0\x9f\x98\x80\"\\/\b\f\n\r\t");
  assert_int_equal (json_array_size (json_object_get (msg, "n")), 5);
  json_decref (msg);
}

/* jansson's allocations fail from the nth on: counted by hand here,
 * since this test is not linked with ld --wrap. */
static long json_countdown = -1;
static bool json_fired;

static void *
failing_json_malloc (size_t n)
{
  if (json_countdown == 0) {
    json_fired = true;
    return NULL;
  }
  if (json_countdown > 0)
    json_countdown--;
  return malloc (n);
}

static void
json_alloc_arm (long n)
{
  json_countdown = n;
  json_fired = false;
}

/* Stop failing; says whether a failure was injected. */
static bool
json_alloc_disarm (void)
{
  json_countdown = -1;
  return json_fired;
}

static const char *const valid_lines[] = {
  GREETING_72,
  "{\"timestamp\": {\"seconds\": 1700000000, \"microseconds\": 123456}, "
  "\"event\": \"JOB_STATUS_CHANGE\", \"data\": {\"status\": \"concluded\", "
  "\"id\": \"knib-backup-vda\"}}",
  "{\"return\": [{\"current-progress\": 1, \"status\": \"concluded\", "
  "\"total-progress\": 1, \"type\": \"backup\", \"id\": \"knib-backup-vda\", "
  "\"error\": \"Input/output error \\u00e9\\ud83d\\ude00\"}], \"id\": "
  "\"knib-12\"}",
  "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Dirty bitmap "
  "'knib-20240101' not found\"}, \"id\": \"knib-3\"}",
};

static void
parse_out_of_memory_is_enomem_not_invalid_json (void **state)
{
  json_set_alloc_funcs (failing_json_malloc, free);
  for (size_t i = 0; i < sizeof valid_lines / sizeof valid_lines[0]; i++) {
    const char *line = valid_lines[i];
    long n;

    for (n = 0; n < 10000; n++) {
      json_t *msg;

      json_alloc_arm (n);
      msg = qmp_message_parse (line, strlen (line));
      if (!json_alloc_disarm ()) {
        assert_non_null (msg);
        json_decref (msg);
        break;
      }
      if (msg != NULL) { /* the failure did not matter */
        json_decref (msg);
        continue;
      }
      if (get_errno () != ENOMEM)
        fail_msg ("line %zu, allocation %ld: errno %d: %s", i, n, get_errno (),
                  get_error ());
    }
    assert_true (n > 0 && n < 10000);
  }
  json_set_alloc_funcs (malloc, free);
}

static void
classify_out_of_memory_is_enomem_not_malformed (void **state)
{
  json_set_alloc_funcs (failing_json_malloc, free);
  for (size_t i = 0; i < sizeof valid_lines / sizeof valid_lines[0]; i++) {
    json_t *msg = json_loads (valid_lines[i], 0, NULL);
    enum qmp_message_kind kind;
    long n;
    int r;

    assert_non_null (msg);
    for (n = 0; n < 10000; n++) {
      json_alloc_arm (n);
      r = qmp_message_classify (msg, &kind);
      if (!json_alloc_disarm ()) {
        assert_int_equal (r, 0);
        break;
      }
      if (r == -1 && get_errno () != ENOMEM)
        fail_msg ("line %zu, allocation %ld: errno %d: %s", i, n, get_errno (),
                  get_error ());
    }
    /* Today classify allocates nothing; jansson's JSON_STRICT would. */
    assert_true (n < 10000);
    json_decref (msg);
  }
  json_set_alloc_funcs (malloc, free);
}

/* qmp_message_classify */

static void
expect_kind (const char *text, enum qmp_message_kind want)
{
  json_t *msg = qmp_message_parse (text, strlen (text));
  enum qmp_message_kind kind;

  if (msg == NULL)
    fail_msg ("'%s': %s", text, get_error ());
  if (qmp_message_classify (msg, &kind) == -1)
    fail_msg ("'%s': %s", text, get_error ());
  assert_int_equal (kind, want);
  json_decref (msg);
}

static void
expect_malformed (const char *text, const char *why)
{
  json_t *msg = qmp_message_parse (text, strlen (text));
  enum qmp_message_kind kind;

  if (msg == NULL)
    fail_msg ("'%s': %s", text, get_error ());
  if (qmp_message_classify (msg, &kind) == 0)
    fail_msg ("'%s' was classified as %d", text, kind);
  assert_int_equal (get_errno (), EPROTO);
  assert_contains (get_error (), "malformed ");
  assert_contains (get_error (), why);
  json_decref (msg);
}

static void
classify_knows_every_valid_shape (void **state)
{
  expect_kind (GREETING_72, QMP_MESSAGE_GREETING);
  expect_kind ("{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 1, \"minor\": "
               "0, \"major\": 8}, \"package\": \"\"}, \"capabilities\": []}}",
               QMP_MESSAGE_GREETING);
  expect_kind ("{\"return\": {}, \"id\": \"knib-1\"}", QMP_MESSAGE_RETURN);
  expect_kind ("{\"return\": {}}", QMP_MESSAGE_RETURN);
  expect_kind ("{\"return\": [{\"id\": \"j\"}], \"id\": \"knib-2\"}",
               QMP_MESSAGE_RETURN);
  expect_kind ("{\"return\": \"text\", \"id\": 7}", QMP_MESSAGE_RETURN);
  expect_kind ("{\"id\": \"knib-3\", \"error\": {\"class\": "
               "\"CommandNotFound\", \"desc\": \"The command x has not been "
               "found\"}}",
               QMP_MESSAGE_ERROR);
  expect_kind ("{\"error\": {\"desc\": \"d\", \"class\": \"GenericError\"}}",
               QMP_MESSAGE_ERROR);
  expect_kind ("{\"timestamp\": {\"seconds\": 1700000000, \"microseconds\": "
               "5}, \"event\": \"BLOCK_JOB_COMPLETED\", \"data\": {\"device\": "
               "\"knib-vda\", \"len\": 1, \"offset\": 1, \"speed\": 0, "
               "\"type\": \"backup\"}}",
               QMP_MESSAGE_EVENT);
  expect_kind ("{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, "
               "\"event\": \"STOP\"}",
               QMP_MESSAGE_EVENT);
}

/* The QMP specification: clients must ignore members they do not know
 * (newer QEMUs add them). */
static void
classify_ignores_members_it_does_not_know (void **state)
{
  expect_kind ("{\"return\": {}, \"id\": \"knib-1\", \"extra\": 1}",
               QMP_MESSAGE_RETURN);
  expect_kind ("{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 1, "
               "\"microseconds\": 2}, \"id\": \"knib-1\"}",
               QMP_MESSAGE_EVENT);
  expect_kind ("{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, "
               "\"minor\": 2, \"major\": 7, \"rc\": 1}, \"x\": 1}, "
               "\"capabilities\": [\"oob\", {\"new\": 1}], \"y\": []}, "
               "\"id\": 1}",
               QMP_MESSAGE_GREETING);
  expect_kind ("{\"error\": {\"class\": \"c\", \"desc\": \"d\", "
               "\"data\": {}}}",
               QMP_MESSAGE_ERROR);
  expect_kind ("{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 1, "
               "\"microseconds\": 2, \"nanoseconds\": 3}}",
               QMP_MESSAGE_EVENT);
}

static void
classify_refuses_wrong_inner_shapes (void **state)
{
  expect_malformed ("{\"error\": {\"class\": \"GenericError\"}, \"id\": 1}",
                    "error reply");
  expect_malformed ("{\"error\": {\"class\": 1, \"desc\": \"d\"}}",
                    "error reply");
  expect_malformed ("{\"error\": \"bad\"}", "error reply");
  expect_malformed ("{\"event\": \"STOP\"}", "event");
  expect_malformed ("{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 1}}",
                    "event");
  expect_malformed ("{\"event\": 5, \"timestamp\": {\"seconds\": 1, "
                    "\"microseconds\": 2}}",
                    "event");
  expect_malformed ("{\"event\": \"STOP\", \"data\": [1], \"timestamp\": "
                    "{\"seconds\": 1, \"microseconds\": 2}}",
                    "event data is not an object");
  expect_malformed ("{\"event\": \"STOP\", \"data\": \"x\", \"timestamp\": "
                    "{\"seconds\": 1, \"microseconds\": 2}}",
                    "event data is not an object");
  expect_malformed ("{\"QMP\": {\"capabilities\": []}}", "greeting");
  expect_malformed ("{\"QMP\": {\"version\": {\"qemu\": {\"major\": 7}}, "
                    "\"capabilities\": []}}",
                    "greeting");
  expect_malformed ("{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, "
                    "\"minor\": 2, \"major\": 7}}, \"capabilities\": {}}}",
                    "capabilities is not an array");
}

static void
classify_refuses_messages_of_no_known_shape (void **state)
{
  expect_malformed ("{}", "not a greeting, reply, error or event");
  expect_malformed ("{\"id\": \"knib-1\"}",
                    "not a greeting, reply, error or event");
  expect_malformed ("{\"hello\": 1}", "not a greeting, reply, error or event");
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (framer_splits_several_messages_in_one_feed),
    cmocka_unit_test (framer_joins_a_message_fed_byte_by_byte),
    cmocka_unit_test (framer_skips_blank_lines_and_strips_crlf),
    cmocka_unit_test (framer_feed_of_nothing_changes_nothing),
    cmocka_unit_test (framer_hands_out_a_4_mib_line),
    cmocka_unit_test (framer_takes_a_line_of_exactly_max_line),
    cmocka_unit_test (framer_refuses_an_unfinished_line_longer_than_max_line),
    cmocka_unit_test (framer_refuses_a_whole_line_longer_than_max_line),
    cmocka_unit_test (framer_bounds_only_the_unfinished_line),
    cmocka_unit_test (framer_partial_says_whether_a_line_is_unfinished),
    cmocka_unit_test (framer_release_frees_what_is_held),
    cmocka_unit_test (parse_refuses_invalid_json),
    cmocka_unit_test (parse_refuses_a_value_that_is_not_an_object),
    cmocka_unit_test (parse_reads_only_len_bytes),
    cmocka_unit_test (parse_accepts_escapes_numbers_and_literals),
    cmocka_unit_test (parse_out_of_memory_is_enomem_not_invalid_json),
    cmocka_unit_test (classify_out_of_memory_is_enomem_not_malformed),
    cmocka_unit_test (classify_knows_every_valid_shape),
    cmocka_unit_test (classify_ignores_members_it_does_not_know),
    cmocka_unit_test (classify_refuses_wrong_inner_shapes),
    cmocka_unit_test (classify_refuses_messages_of_no_known_shape),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
