module github.com/dbrouter/dbrouter/fleet

go 1.26.0

replace github.com/dbrouter/dbrouter => ../
