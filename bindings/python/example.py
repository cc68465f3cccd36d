import multiprocessing, time
import mp_throttle

def work(throttle):                  # runs in each worker process
    while throttle.await_fuel():     # blocks for fuel; False once stopped
        pass                         # one request, one job, ...

if __name__ == "__main__":
    with mp_throttle.Throttle(4, 1) as throttle:   # 4 per second, for all workers
        with multiprocessing.Pool(4, initializer=work, initargs=(throttle,)):
            throttle.start()
            time.sleep(2)
            runtime, total, _, _ = throttle.stop()
    print(f"{total} units of fuel in {runtime:.2f} s")   # 8 or 9: at 0, 0.25, ... 2 s
