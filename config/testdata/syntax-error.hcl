listener "public" {
  address = "127.0.0.1:8080"
route "x" { respond {} }
