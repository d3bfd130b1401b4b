-- wrk: after the run, one line with the latency tail in µs, for
-- bench/run_gateway_bench.sh: wrk's own --latency shows only 50/75/90/99 %,
-- and a throttled proxy's tails differ above 95 % (docs/benchmarks.md,
-- "A throttled gateway's tail: what it is not").
done = function(summary, latency, requests)
  io.write(string.format("PERCENTILES %d %d %d %d\n", latency:percentile(95), latency:percentile(99),
                         latency:percentile(99.9), latency.max))
end
