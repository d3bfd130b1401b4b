-- wrk: GET with a bearer token. TOKEN and PATH from the environment.
local token = os.getenv("TOKEN")
local path = os.getenv("WRK_PATH") or "/"
wrk.method = "GET"
wrk.path = path
wrk.headers["Authorization"] = "Bearer " .. token
