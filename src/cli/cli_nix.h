/* kiln nix <verb>: the Nix data model on the command line, one file per verb
 * (cmd_nix_<verb>.c), dispatched by cmd_nix.c. */
#pragma once

#include <kiln/nix/derivation.h>

#include "cli.h"

int cmd_nix_show_derivation(int argc, char **argv);
int cmd_nix_hash_derivation(int argc, char **argv);
int cmd_nix_print_derivation(int argc, char **argv);
int cmd_nix_nar_hash(int argc, char **argv);
int cmd_nix_dump_path(int argc, char **argv);
int cmd_nix_import_nar(int argc, char **argv);
int cmd_nix_build(int argc, char **argv);
int cmd_nix_path_info(int argc, char **argv);
int cmd_nix_serve(int argc, char **argv);

/* A DRV argument: a .drv file whose name is its store path's base name
 * ("<hash>-<name>.drv"), wherever it lies (e.g. in a chroot store). Reads and
 * parses it; *ret_path gets its store path. */
int cli_nix_read_drv(const char *arg, struct kiln_nix_store_path *ret_path,
                     struct kiln_nix_derivation **ret, struct kiln_error **err);
/* A build's log line, written to stderr (kiln_nixbuild_options.log). */
void cli_nix_log_line(void *userdata, const char *line);
/* The directory holding a DRV argument ("." when it has none), heap string. */
char *cli_nix_dir_of(const char *arg);
