package node

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/nii-uk/nii"
)

// generateKey creates an Ed25519 node key at path (mode 0600, never
// overwriting) and returns its node ID.
func generateKey(path string) (nii.NodeID, error) {
	priv, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		return "", fmt.Errorf("generate node key: %w", err)
	}
	b, err := crypto.MarshalPrivateKey(priv)
	if err != nil {
		return "", err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("write node key: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(path)
		return "", fmt.Errorf("write node key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return "", fmt.Errorf("write node key: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	id, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		return "", err
	}
	return nii.NodeID(id.String()), nil
}

// loadKey reads the node key, refusing one that others can read.
func loadKey(home string) (crypto.PrivKey, ed25519.PrivateKey, nii.NodeID, error) {
	path := filepath.Join(home, KeyFile)
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, "", fmt.Errorf("%w: %s is missing", ErrNoHome, path)
	}
	if err != nil {
		return nil, nil, "", err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, nil, "", fmt.Errorf("node key %s has mode %v: it must be readable by its owner only (chmod 600 %s)", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, "", err
	}
	priv, err := crypto.UnmarshalPrivateKey(b)
	if err != nil {
		return nil, nil, "", fmt.Errorf("node key %s: %w", path, err)
	}
	if priv.Type() != crypto.Ed25519 {
		return nil, nil, "", fmt.Errorf("node key %s: want Ed25519, have %v", path, priv.Type())
	}
	raw, err := priv.Raw()
	if err != nil {
		return nil, nil, "", err
	}
	pid, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		return nil, nil, "", err
	}
	return priv, ed25519.PrivateKey(raw), nii.NodeID(pid.String()), nil
}

// HomeNodeID returns the ID of the node whose home is home.
func HomeNodeID(home string) (nii.NodeID, error) {
	_, _, id, err := loadKey(home)
	return id, err
}
