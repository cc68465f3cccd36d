module mp-throttle.dev/mpthrottle

go 1.19
