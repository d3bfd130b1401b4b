-- wrk: POST /api/orders with a bearer token (TOKEN from the environment).
local token = os.getenv("TOKEN")
wrk.method = "POST"
wrk.path = "/api/orders"
wrk.headers["Authorization"] = "Bearer " .. token
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"product":"Benchmark widget","quantity":3,"price":"19.99"}'
