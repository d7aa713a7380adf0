-- wrk script of bench/edge-vs-nginx.sh. Arguments (after `--`): a key file (one
-- "ADDRESS GRANT" per line), the target (`edge`: GET /chunks/ADDRESS with the grant;
-- `nginx`: GET /ch/AB/ADDRESS, the provider's object path) and the thread count. Every
-- thread cycles over all keys, from its own starting point.
local threads = 0
function setup(thread)
    thread:set("id", threads)
    threads = threads + 1
end

local reqs, n = {}, 0

function init(args)
    local file, target, nthreads = args[1], args[2], tonumber(args[3])
    for line in io.lines(file) do
        local addr, grant = line:match("^(%x+) (%S+)$")
        if target == "edge" then
            reqs[#reqs + 1] = wrk.format("GET", "/chunks/" .. addr, { ["x-nuage-grant"] = grant })
        else
            reqs[#reqs + 1] = wrk.format("GET", "/ch/" .. addr:sub(1, 2) .. "/" .. addr)
        end
    end
    -- Threads start at different keys so they do not walk in step.
    n = id * math.floor(#reqs / math.max(nthreads, 1))
end

function request()
    n = n + 1
    return reqs[((n - 1) % #reqs) + 1]
end

