-- wrk script shared by the load scripts of this folder: one Yandex Monitoring alert per
-- request, ALARM, alertName "cpu", folderId "f1".
-- args: the alertId space: K (default 1000) cycles the ids over K; 0 gives every request
-- a new id. Use: wrk -s yandex_post.lua URL -- K
local n, space = 0, 1000
function init(args)
  if args[1] then space = tonumber(args[1]) or 1000 end
end
function request()
  n = n + 1
  local id = space > 0 and (n % space) or n
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"},
    '{"alertId":"a' .. id .. '","alertName":"cpu","folderId":"f1","status":"ALARM"}')
end
