/*
 * one.c + two.c: two C files that both include mp_throttle.h (twice each,
 * through its include guard) link into one program (a double-include
 * test, as wasmtime's C API has). Built with extra warnings
 * (-Wstrict-prototypes -Wmissing-prototypes -Wundef -Wshadow).
 */
#include "mp_throttle.h"
#include "mp_throttle.h"

#include <stdio.h>

/* Defined in two.c. */
int make_and_free(void);

int main(void) {
    uint32_t major = 0, minor = 0, patch = 0;
    int failed = 0;

    if (mpt_version(&major, &minor, &patch) != MPT_STATUS_OK ||
        major != MPT_VERSION_MAJOR) {
        failed++;
    }
    failed += make_and_free();
    printf("header double include: %d passed, %d failed\n", 2 - failed, failed);
    return failed == 0 ? 0 : 1;
}
