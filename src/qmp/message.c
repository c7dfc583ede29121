/* SPDX-License-Identifier: Apache-2.0 */
/* message.c: parse one QMP line and check which of QMP's shapes it has. */
#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "internal.h"

/* jansson does not always say when it ran out of memory: a string it
 * cannot copy comes out as a syntax error ("invalid token"), a container
 * it cannot allocate as an error without a reason.  So when it rejects a
 * line, the syntax is checked here, allocating nothing: a well-formed
 * line that jansson rejected was rejected for lack of memory. */

#define SCAN_MAX_DEPTH 2048 /* jansson's JSON_PARSER_MAX_DEPTH */

struct scan {
  const char *p, *end;
};

static bool scan_value (struct scan *s, unsigned depth);

static void
scan_blanks (struct scan *s)
{
  while (s->p < s->end
         && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
    s->p++;
}

static bool
scan_char (struct scan *s, char c)
{
  if (s->p == s->end || *s->p != c)
    return false;
  s->p++;
  return true;
}

static bool
scan_word (struct scan *s, const char *word)
{
  size_t n = strlen (word);

  if ((size_t) (s->end - s->p) < n || memcmp (s->p, word, n) != 0)
    return false;
  s->p += n;
  return true;
}

static size_t
scan_digits (struct scan *s)
{
  const char *start = s->p;

  while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
    s->p++;
  return s->p - start;
}

static bool
scan_number (struct scan *s)
{
  scan_char (s, '-');
  if (!scan_char (s, '0') && scan_digits (s) == 0)
    return false;
  if (scan_char (s, '.') && scan_digits (s) == 0)
    return false;
  if (scan_char (s, 'e') || scan_char (s, 'E')) {
    if (!scan_char (s, '+'))
      scan_char (s, '-');
    if (scan_digits (s) == 0)
      return false;
  }
  return true;
}

/* Four hex digits, or -1. */
static int
scan_hex4 (struct scan *s)
{
  int v = 0;

  if (s->end - s->p < 4)
    return -1;
  for (int i = 0; i < 4; i++) {
    char c = *s->p++;

    v <<= 4;
    if (c >= '0' && c <= '9')
      v |= c - '0';
    else if (c >= 'a' && c <= 'f')
      v |= c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
      v |= c - 'A' + 10;
    else
      return -1;
  }
  return v;
}

/* After "\u": one code point; a surrogate pair takes two escapes. */
static bool
scan_unicode_escape (struct scan *s)
{
  int v = scan_hex4 (s);

  if (v >= 0xdc00 && v <= 0xdfff)
    return false;
  if (v >= 0xd800 && v <= 0xdbff) {
    if (!scan_char (s, '\\') || !scan_char (s, 'u'))
      return false;
    v = scan_hex4 (s);
    return v >= 0xdc00 && v <= 0xdfff;
  }
  return v >= 0;
}

static bool
scan_string (struct scan *s)
{
  if (!scan_char (s, '"'))
    return false;
  while (s->p < s->end) {
    unsigned char c = *s->p++;

    if (c == '"')
      return true;
    if (c < 0x20)
      return false;
    if (c != '\\')
      continue;
    if (s->p == s->end)
      return false;
    c = *s->p++;
    if (c == 'u') {
      if (!scan_unicode_escape (s))
        return false;
    }
    else if (c == '\0' || strchr ("\"\\/bfnrt", c) == NULL)
      return false;
  }
  return false;
}

/* The members of an object or the elements of an array, after the
 * opening bracket. */
static bool
scan_container (struct scan *s, char close, unsigned depth)
{
  scan_blanks (s);
  if (scan_char (s, close))
    return true;
  for (;;) {
    if (close == '}') {
      if (!scan_string (s))
        return false;
      scan_blanks (s);
      if (!scan_char (s, ':'))
        return false;
    }
    if (!scan_value (s, depth))
      return false;
    if (scan_char (s, close))
      return true;
    if (!scan_char (s, ','))
      return false;
    scan_blanks (s);
  }
}

/* One value and the blanks around it. */
static bool
scan_value (struct scan *s, unsigned depth)
{
  bool ok;
  char close;

  scan_blanks (s);
  if (s->p == s->end)
    return false;
  switch (*s->p) {
  case '{':
  case '[':
    if (depth >= SCAN_MAX_DEPTH)
      return false;
    close = *s->p++ == '{' ? '}' : ']';
    ok = scan_container (s, close, depth + 1);
    break;
  case '"':
    ok = scan_string (s);
    break;
  case 't':
    ok = scan_word (s, "true");
    break;
  case 'f':
    ok = scan_word (s, "false");
    break;
  case 'n':
    ok = scan_word (s, "null");
    break;
  default:
    ok = scan_number (s);
    break;
  }
  scan_blanks (s);
  return ok;
}

/* The whole line is one JSON object or array (as jansson requires
 * without JSON_DECODE_ANY). */
static bool
json_well_formed (const char *line, size_t len)
{
  struct scan s = { .p = line, .end = line + len };

  scan_blanks (&s);
  if (s.p == s.end || (*s.p != '{' && *s.p != '['))
    return false;
  return scan_value (&s, 0) && s.p == s.end;
}

static bool
parse_ran_out_of_memory (const json_error_t *err, const char *line, size_t len)
{
  enum json_error_code code = json_error_code (err);

  if (code == json_error_out_of_memory)
    return true;
  /* Duplicate keys, bad UTF-8, huge numbers, deep nesting... are
   * reported for what they are; only these may hide a failed
   * allocation. */
  if (code != json_error_unknown && code != json_error_invalid_syntax
      && code != json_error_premature_end_of_input)
    return false;
  return json_well_formed (line, len);
}

json_t *
qmp_message_parse (const char *line, size_t len)
{
  json_error_t err;
  json_t *msg;

  /* jansson leaves the error code unset when it fails early. */
  memset (&err, 0, sizeof err);
  msg = json_loadb (line, len, JSON_REJECT_DUPLICATES, &err);
  if (msg == NULL) {
    if (parse_ran_out_of_memory (&err, line, len))
      set_error (ENOMEM, "cannot parse a message of %zu bytes from QEMU", len);
    else
      set_error (EPROTO, "invalid JSON from QEMU at column %d: %s: %.200s",
                 err.column, err.text, line);
    return NULL;
  }
  if (!json_is_object (msg)) {
    json_decref (msg);
    set_error (EPROTO, "message from QEMU is not a JSON object: %.200s", line);
    return NULL;
  }
  return msg;
}

static int
shape_error (const json_t *msg, const char *what, const char *why)
{
  CLEANUP_FREE char *text = json_dumps (msg, JSON_COMPACT);

  set_error (EPROTO, "malformed %s from QEMU (%s): %.200s", what, why,
             text ? text : "?");
  return -1;
}

/* json_unpack_ex failed: the shape is wrong, or jansson ran out of
 * memory. */
static int
unpack_error (const json_t *msg, const char *what, const json_error_t *err)
{
  if (json_error_code (err) == json_error_out_of_memory) {
    set_error (ENOMEM, "cannot check a %s from QEMU", what);
    return -1;
  }
  return shape_error (msg, what, err->text);
}

static int
classify_greeting (const json_t *msg, enum qmp_message_kind *kind)
{
  json_error_t err;
  json_t *version, *caps;
  int major, minor, micro;

  if (json_unpack_ex ((json_t *) msg, &err, 0, "{s:{s:o,s:o}}", "QMP",
                      "version", &version, "capabilities", &caps)
      == -1)
    return unpack_error (msg, "greeting", &err);
  if (json_unpack_ex (version, &err, 0, "{s:{s:i,s:i,s:i}}", "qemu", "major",
                      &major, "minor", &minor, "micro", &micro)
      == -1)
    return unpack_error (msg, "greeting", &err);
  if (!json_is_array (caps))
    return shape_error (msg, "greeting", "capabilities is not an array");
  *kind = QMP_MESSAGE_GREETING;
  return 0;
}

static int
classify_error (const json_t *msg, enum qmp_message_kind *kind)
{
  json_error_t err;
  const char *cls, *desc;

  if (json_unpack_ex ((json_t *) msg, &err, 0, "{s:{s:s,s:s}}", "error",
                      "class", &cls, "desc", &desc)
      == -1)
    return unpack_error (msg, "error reply", &err);
  *kind = QMP_MESSAGE_ERROR;
  return 0;
}

static int
classify_event (const json_t *msg, enum qmp_message_kind *kind)
{
  json_error_t err;
  const char *name;
  json_t *data = NULL;
  json_int_t secs, usecs;

  if (json_unpack_ex ((json_t *) msg, &err, 0, "{s:s, s?o, s:{s:I,s:I}}",
                      "event", &name, "data", &data, "timestamp", "seconds",
                      &secs, "microseconds", &usecs)
      == -1)
    return unpack_error (msg, "event", &err);
  if (data != NULL && !json_is_object (data))
    return shape_error (msg, "event", "event data is not an object");
  *kind = QMP_MESSAGE_EVENT;
  return 0;
}

/* Only the members knib reads are checked, with their types; any other
 * member is ignored, as the QMP specification asks of clients: newer
 * QEMUs add capabilities to the greeting and keys to replies and
 * events. */
int
qmp_message_classify (const json_t *msg, enum qmp_message_kind *kind)
{
  if (json_object_get (msg, "QMP") != NULL)
    return classify_greeting (msg, kind);
  if (json_object_get (msg, "error") != NULL)
    return classify_error (msg, kind);
  if (json_object_get (msg, "event") != NULL)
    return classify_event (msg, kind);
  if (json_object_get (msg, "return") != NULL) {
    *kind = QMP_MESSAGE_RETURN;
    return 0;
  }
  return shape_error (msg, "message", "not a greeting, reply, error or event");
}
