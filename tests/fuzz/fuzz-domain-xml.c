/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz-domain-xml.c: fuzz target: a libvirt domain XML (the hook's stdin, virsh dumpxml). */
#include <config.h>

#include <stdlib.h>

#include "common/error.h"
#include "domain/domain.h"
#include "fuzz.h"

#define MAX_INPUT (64u * 1024)

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  const char *xml = (const char *) data;
  struct domain_info info;
  char *out = NULL;

  if (size > MAX_INPUT)
    return 0;
  if (domain_info_parse (xml, size, &info) == 0) {
    (void) domain_info_find_alias (&info, "virtio-disk0");
    domain_info_release (&info);
  }
  /* knib libvirt enable/disable rewrite the same XML. */
  if (domain_xml_set_qmp (xml, size, "/run/knib/qmp/fuzz.sock",
                          size > 0 && (data[0] & 1), &out)
      == 0)
    free (out);
  error_clear ();
  return 0;
}
