# SPDX-License-Identifier: Apache-2.0
# common.mk: flags shared by every Makefile.am of knib.
AM_CPPFLAGS = -I$(top_srcdir)/src
AM_CFLAGS = $(WARNINGS_CFLAGS) $(JANSSON_CFLAGS)
