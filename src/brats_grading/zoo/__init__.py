"""Model-zoo readiness: the zoo's CI checks run offline (:mod:`.verify`) and the publishing path (:mod:`.export`)."""
