module devenv.local/pause

go 1.26
