module example.com/modelsync-lambda

go 1.22
