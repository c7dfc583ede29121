/* SPDX-License-Identifier: Apache-2.0 */
/* knib.c: the knib program's entry point (the command itself is libcli.a). */
#include <config.h>

#include "cli.h"

int
main (int argc, char **argv)
{
  return cli_main (argc, argv, false);
}
