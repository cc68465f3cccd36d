module mp_throttle/bindings/go

go 1.19
