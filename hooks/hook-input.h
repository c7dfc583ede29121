/* SPDX-License-Identifier: Apache-2.0 */
/* hook-input.h: what libvirtd hands knib-hook: its arguments and the domain XML. */
#ifndef KNIB_HOOK_INPUT_H
#define KNIB_HOOK_INPUT_H

#include <stddef.h>

#include "domain/domain.h"

/* The domain XML is small; anything this large is not one. */
#define HOOK_MAX_XML (16u * 1024 * 1024)

enum hook_action {
  HOOK_ACT_NONE,
  HOOK_ACT_PREPARE,
  HOOK_ACT_START,
  HOOK_ACT_RUNNING,
  HOOK_ACT_STOPPED,
};

/* What "knib-hook DOMAIN OPERATION SUBOPERATION EXTRA" asks for.  -1
 * with set_error when the arguments are not libvirt's or name an
 * operation knib does not know (the hook logs it and exits 0); a domain
 * whose name knib would not record is an error for the actions that
 * record. */
int hook_input_action (int argc, char **argv, enum hook_action *act)
  __attribute__ ((warn_unused_result));

/* Read the domain XML from fd (to its end, NUL-terminated, at most
 * HOOK_MAX_XML bytes) and parse it into info; it must be the XML of
 * domain.  On success the caller frees *xml and releases info.  -1 with
 * set_error. */
int hook_input_read_domain (int fd, const char *domain, char **xml, size_t *len,
                            struct domain_info *info)
  __attribute__ ((warn_unused_result));

#endif
