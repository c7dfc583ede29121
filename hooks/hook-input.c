/* SPDX-License-Identifier: Apache-2.0 */
/* hook-input.c: parsing what libvirtd hands knib-hook (shared with its fuzz target). */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/util.h"
#include "hook-input.h"

static const struct {
  const char *op;
  const char *sub; /* NULL: any; the action for it */
  enum hook_action act;
} ops[] = {
  { "prepare", "begin", HOOK_ACT_PREPARE },
  { "prepare", NULL, HOOK_ACT_NONE },
  { "start", "begin", HOOK_ACT_START },
  { "start", NULL, HOOK_ACT_NONE },
  { "started", "begin", HOOK_ACT_RUNNING },
  { "started", NULL, HOOK_ACT_NONE },
  { "reconnect", "begin", HOOK_ACT_RUNNING },
  { "reconnect", NULL, HOOK_ACT_NONE },
  { "stopped", "end", HOOK_ACT_STOPPED },
  { "stopped", NULL, HOOK_ACT_NONE },
  { "release", "end", HOOK_ACT_STOPPED },
  { "release", NULL, HOOK_ACT_NONE },
  { "migrate", NULL, HOOK_ACT_NONE },
  { "restore", NULL, HOOK_ACT_NONE },
  { "attach", NULL, HOOK_ACT_NONE },
};

int
hook_input_action (int argc, char **argv, enum hook_action *act)
{
  size_t i;

  if (argc < 4) {
    set_error (EINVAL,
               "called with %d arguments: expected DOMAIN OPERATION "
               "SUBOPERATION EXTRA (it is libvirt's qemu hook)",
               argc - 1);
    return -1;
  }
  for (i = 0; i < sizeof ops / sizeof ops[0]; i++)
    if (strcmp (ops[i].op, argv[2]) == 0
        && (ops[i].sub == NULL || strcmp (ops[i].sub, argv[3]) == 0))
      break;
  if (i == sizeof ops / sizeof ops[0]) {
    set_error (EINVAL, "domain '%s': unknown operation '%s %s': ignored",
               argv[1], argv[2], argv[3]);
    return -1;
  }
  *act = ops[i].act;
  /* Records are files named after the domain: its name must be one
   * path component that knib accepts as a VM name. */
  if (*act != HOOK_ACT_NONE && *act != HOOK_ACT_PREPARE
      && *act != HOOK_ACT_START && name_check ("domain", argv[1]) == -1) {
    char *why = strdup (get_error ());

    set_error (EINVAL, "%s: knib does not record it", why ? why : argv[1]);
    free (why);
    return -1;
  }
  return 0;
}

/* fd, whole (NUL-terminated). */
static char *
read_all (int fd, size_t *len)
{
  size_t cap = 65536, n = 0;
  char *buf = malloc (cap);

  if (buf == NULL) {
    set_error (errno, "malloc");
    return NULL;
  }
  for (;;) {
    ssize_t r;

    if (n + 1 >= cap) {
      char *p;

      if (cap >= HOOK_MAX_XML) {
        set_error (EFBIG, "the domain XML on stdin is over %u bytes",
                   HOOK_MAX_XML);
        free (buf);
        return NULL;
      }
      cap *= 2;
      p = realloc (buf, cap);
      if (p == NULL) {
        set_error (errno, "realloc");
        free (buf);
        return NULL;
      }
      buf = p;
    }
    r = read (fd, buf + n, cap - n - 1);
    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1) {
      set_error (errno, "cannot read the domain XML on stdin");
      free (buf);
      return NULL;
    }
    if (r == 0)
      break;
    n += r;
  }
  buf[n] = '\0';
  *len = n;
  return buf;
}

int
hook_input_read_domain (int fd, const char *domain, char **xml, size_t *len,
                        struct domain_info *info)
{
  *xml = read_all (fd, len);
  if (*xml == NULL)
    return -1;
  if (domain_info_parse (*xml, *len, info) == -1)
    goto fail;
  if (strcmp (info->name, domain) != 0) {
    set_error (EINVAL, "the XML on stdin is of domain '%s'", info->name);
    domain_info_release (info);
    goto fail;
  }
  return 0;
fail:
  free (*xml);
  *xml = NULL;
  return -1;
}
