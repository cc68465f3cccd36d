import asyncio
import mp_throttle

async def job(throttle, i):
    async with throttle:                 # waits for a unit of fuel; the event loop runs on
        return i                         # one request, one job, ...

async def main():
    with mp_throttle.Throttle(10, 1) as throttle:         # 10 per second, for all tasks and processes
        throttle.start()
        done = await asyncio.gather(*(job(throttle, i) for i in range(21)))
        print(f"{len(done)} jobs done")                   # in 2 s: 1 at once, then 1 per 0.1 s
        print(await throttle.acquire(n=10, timeout=0.5))  # False: 10 more units take 1 s to come
        runtime, total, _, _ = throttle.stop()
    print(f"{total} units of fuel in {runtime:.1f} s")    # 21 units of fuel in 2.5 s

asyncio.run(main())
