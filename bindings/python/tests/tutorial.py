import mp_throttle
throttle = mp_throttle.Throttle(4,1)

import time
import multiprocessing
def work(tank):
    while not tank.kill_flag.is_set():
        # Block until 'fuel' is available.
        tank.await_fuel()
        # do something and repeat.
workerpool = multiprocessing.Pool(processes=4, initializer=work, initargs=(throttle,))

throttle.start()
time.sleep(5)
runtime, total_emissions, mean_time_between_processes, mean_processes_per_second = throttle.stop()
print("Runtime: {}".format(runtime))
print("Total: {}".format(total_emissions))
print("Time between processes: {}".format(mean_time_between_processes))
print("Processes per second: {}".format(mean_processes_per_second))

throttle.start()
for i in range(10):
    print(throttle.latest())
    print(throttle.mean())
    time.sleep(0.5)

throttle.stop()
