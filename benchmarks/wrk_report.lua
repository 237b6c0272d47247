-- wrk script: after the run, prints one line "WRKJSON {...}" with the
-- summary, error counts and latency percentiles in microseconds (fine
-- steps, for CDF plots and p99.9, which `wrk --latency` does not print).
local steps = {}
for p = 1, 99 do steps[#steps + 1] = p end
for _, p in ipairs({99.5, 99.9, 99.99}) do steps[#steps + 1] = p end

done = function(summary, latency, requests)
  local pts = {}
  for _, p in ipairs(steps) do
    pts[#pts + 1] = string.format("[%g,%.0f]", p, latency:percentile(p))
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%.0f,"duration_us":%.0f,"bytes":%.0f,' ..
    '"errors":{"connect":%.0f,"read":%.0f,"write":%.0f,"status":%.0f,"timeout":%.0f},' ..
    '"min_us":%.0f,"max_us":%.0f,"mean_us":%.1f,"percentiles":[%s]}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.max, latency.mean, table.concat(pts, ",")))
end
