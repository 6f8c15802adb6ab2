#!/bin/sh
# The Flex Template launcher runs $FLEX_TEMPLATE_GO_BINARY with the
# template's parameters and Dataflow options as flags only; multiad wants
# its subcommand first.
exec "${MULTIAD_BIN:-/template/multiad}" score "$@"
