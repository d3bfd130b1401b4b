-- wrk: POST /api/users/login for USERNAME/PASSWORD from the environment (bcrypt every time).
wrk.method = "POST"
wrk.path = "/api/users/login"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"username":"' .. os.getenv("USERNAME") .. '","password":"' .. os.getenv("PASSWORD") .. '"}'
