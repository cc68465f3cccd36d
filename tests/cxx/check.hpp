// check.hpp: the checks the C++ tests share, as tests/c/check.h is for C.
// CHECK(cond) counts a check; CHECK_THROWS(expr, status) checks that expr
// throws mpt::Error with that status, a non-empty library message and a
// what() that names both, and evaluates to that message ("" otherwise).
// report() prints "N passed, N failed" and gives the exit status.
#pragma once

#include "mp_throttle.hpp"

#include <cstdio>
#include <exception>
#include <string>

namespace check {

inline int passed = 0;
inline int failed = 0;

inline void check_true(bool ok, const char *what, const char *file, int line) {
    if (ok) {
        passed++;
    } else {
        failed++;
        std::printf("FAIL %s:%d: %s\n", file, line, what);
        std::fflush(stdout);
    }
}

template <class F>
std::string check_throws(F f, mpt_status want, const char *what, const char *file, int line) {
    try {
        f();
    } catch (const mpt::Error &e) {
        const bool ok = e.code() == want && !e.detail().empty() &&
                        std::string(e.what()).find(e.detail()) != std::string::npos &&
                        std::string(e.what()).find(mpt_strerror(want)) != std::string::npos;
        check_true(ok, what, file, line);
        if (!ok) {
            std::printf("     threw %d (%s), expected %d (%s)\n", static_cast<int>(e.code()), e.what(),
                        static_cast<int>(want), mpt_strerror(want));
        }
        return e.detail();
    } catch (const std::exception &e) {
        check_true(false, what, file, line);
        std::printf("     threw something else: %s\n", e.what());
        return std::string();
    }
    check_true(false, what, file, line);
    std::printf("     did not throw\n");
    return std::string();
}

// The line every test program ends with, and its exit status.
inline int report() {
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}

}  // namespace check

#define CHECK(cond) check::check_true((cond), #cond, __FILE__, __LINE__)
#define CHECK_THROWS(expr, status) \
    check::check_throws([&] { (void)(expr); }, (status), #expr, __FILE__, __LINE__)
