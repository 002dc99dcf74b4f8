"""Brain MRI tumor CNN: image shards (:mod:`.prepare`), the network (:mod:`.model`), distributed
training (:mod:`.train`) and evaluation (:mod:`.evaluate`)."""
