"""`python -m collection_operator.kubectl_plugin`: what krew's shim (plugins/kubectl-qdrant) runs."""

from .main import main

if __name__ == "__main__":
    main()
