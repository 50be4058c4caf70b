-- wrk script shared by the load scripts of this folder: one Yandex Monitoring alert per
-- request, ALARM, alertName "cpu", folderId "f1".
-- args: the alertId space: K (default 1000) cycles the ids over K; 0 gives every request
-- a new id. With a second argument `pairs`, each alert fires and then resolves (OK): two
-- requests per id, the ids as K says. Use: wrk -s yandex_post.lua URL -- K [pairs]
local n, space, pairs = 0, 1000, false
function init(args)
  if args[1] then space = tonumber(args[1]) or 1000 end
  pairs = args[2] == "pairs"
end
function request()
  n = n + 1
  local k, status = n, "ALARM"
  if pairs then
    k = math.floor(n / 2)
    if n % 2 == 1 then status = "OK" end
  end
  local id = space > 0 and (k % space) or k
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"},
    '{"alertId":"a' .. id .. '","alertName":"cpu","folderId":"f1","status":"' .. status .. '"}')
end
