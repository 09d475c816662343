module modelsync.dev/tests/notify/hmac

go 1.26
