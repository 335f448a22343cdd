module example.com/jwks-operator-signing

go 1.22
