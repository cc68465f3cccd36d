/* two.c: the second translation unit of the double-include test (see one.c). */
#include "mp_throttle.h"
#include "mp_throttle.h"

int make_and_free(void);

/* 0 on success, 1 on failure. */
int make_and_free(void) {
    mpt_options options;
    mpt_throttle *t = NULL;

    if (mpt_options_init(&options, MPT_OPTIONS_VERSION) != MPT_STATUS_OK) {
        return 1;
    }
    if (mpt_throttle_new(4, 1.0, &options, &t) != MPT_STATUS_OK) {
        return 1;
    }
    return mpt_throttle_free(t) == MPT_STATUS_OK ? 0 : 1;
}
