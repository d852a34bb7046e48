// Package registry knows what datasets exist: the federated catalog (the
// newest signed advert of every dataset from every origin, verified on
// receipt, kept in badger and searchable) and the member table.
//
// Its sub-packages hold the rest of the registry's work, each its own job:
// registry/gossip keeps the catalog current over memberlist, registry/search
// is the catalog's index, registry/table profiles CSV files and names media
// types, registry/opendata shows the catalog as CKAN, DCAT and Data
// Packages. registry itself links neither memberlist nor libp2p, so a
// reader of the catalog does not either; it does not import exchange, and
// package node wires the two together.
package registry
