// cxx.cpp: the header compiles as C++17 (-Wall -Wextra -Werror -pedantic),
// its declarations have C linkage (this links against the C ABI), and its
// enums are usable from C++.
#include "mp_throttle.h"

#include <cstdio>
#include <cstring>
#include <type_traits>

static_assert(sizeof(mpt_options) == 48, "mpt_options layout");
static_assert(sizeof(mpt_rate) == 16, "mpt_rate layout");
static_assert(sizeof(mpt_summary) == 32, "mpt_summary layout");
static_assert(std::is_same<std::underlying_type<mpt_status>::type, int32_t>::value,
              "mpt_status is an int32_t");
static_assert(std::is_same<std::underlying_type<mpt_hardcap>::type, uint32_t>::value,
              "mpt_hardcap is a uint32_t");

int main() {
    int passed = 0, failed = 0;
    auto check = [&](bool ok, const char *what) {
        if (ok) {
            passed++;
        } else {
            failed++;
            std::printf("FAIL: %s\n", what);
        }
    };

    mpt_options options;
    check(mpt_options_init(&options, MPT_OPTIONS_VERSION) == MPT_STATUS_OK, "options_init");
    options.hardcap = MPT_HARDCAP_WINDOW;
    mpt_throttle *t = nullptr;
    check(mpt_throttle_new(4, 1.0, &options, &t) == MPT_STATUS_OK, "throttle_new");
    check(mpt_start(t) == MPT_STATUS_OK, "start");
    int64_t grant = 0;
    check(mpt_await_fuel(t, MPT_FOREVER, &grant) == MPT_STATUS_OK && grant > 0, "await_fuel");
    mpt_summary summary{};
    check(mpt_stop(t, &summary) == MPT_STATUS_OK && summary.total == 1, "stop");
    check(mpt_throttle_free(t) == MPT_STATUS_OK, "free");
    check(mpt_throttle_new(0, 1.0, nullptr, &t) == MPT_STATUS_INVALID_ARGUMENT, "max_n 0");
    check(std::strcmp(mpt_strerror(-1), "unknown status") == 0, "strerror");

    std::printf("header as C++: %d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
