"""The store on disk: a folder of shards, each written whole or not at all.

Layout::

    <store>/store.json           what the store holds and what it is keyed to
    <store>/shard-00000/         outputs of samples 0 .. shard_size - 1
        0.logits.npy             output 0 in full (float32), or
        0.top_logp.npy, 0.top_index.npy, 0.rest_logp.npy   its top-k (keras_distill.store.topk)
        inputs.sha256            (datasets) a hash of the shard's inputs
    <store>/shard-00001/ ...

A shard is written into ``shard-NNNNN.partial-<writer>/`` and renamed when complete: a
half-written shard (a crash, a killed worker) is never read, and is written again on resume. Fields are
``.npy`` files read as memory maps, so a store larger than memory is read row by row.
"""

from __future__ import annotations

import collections
import json
import os
import shutil

import numpy as np

from keras_distill.data.lazy import LazyArray
from keras_distill.locks import pid_alive
from keras_distill.store import topk

FORMAT = "keras-distill teacher outputs"
VERSION = 1
MANIFEST = "store.json"


class StoreError(ValueError):
    """A store that cannot be read or written as asked (another key, a missing shard)."""


def _shard_name(i):
    return f"shard-{i:05d}"


#: Memory maps a store keeps open at once (each holds a file descriptor).
OPEN_MAPS = 64


class TeacherStore:
    """A folder of teacher outputs: :meth:`create` or :meth:`open` one.

    Attributes:
        path: the folder.
        meta: the manifest (``store.json``): ``key``, ``samples`` (None until complete),
            ``shard_size``, ``temperature``, ``top_k``, ``structure`` and ``names`` (how the
            teacher's outputs nest), ``outputs`` (per output: ``shape`` of a sample, ``form``,
            ``top_k``), ``complete``, ``batches`` (datasets: the batch sizes).
    """

    def __init__(self, path, meta):
        self.path = os.fspath(path)
        self.meta = meta
        self._maps = collections.OrderedDict()  # (shard, output, field) -> memory map, LRU

    # -- creating and opening -------------------------------------------------------------

    @classmethod
    def create(cls, path, *, key, shard_size=4096, top_k=None, temperature=1.0,
               description=None):
        """A new store at ``path``, or the unfinished (or finished) one there with the same
        ``key`` (resumed). A store there with another key is refused."""
        path = os.fspath(path)
        manifest = os.path.join(path, MANIFEST)
        if not os.path.exists(manifest):
            # another writer's temporary files, or its manifest just made, are not in the way
            if os.path.exists(path) and any(".partial" not in n and n != MANIFEST
                                            for n in os.listdir(path)):
                raise StoreError(f"{path} exists and is not a teacher-output store; choose an "
                                 "empty or new folder.")
            os.makedirs(path, exist_ok=True)
            meta = {"format": FORMAT, "version": VERSION, "key": key, "samples": None,
                    "shard_size": int(shard_size), "top_k": top_k,
                    "temperature": float(temperature), "structure": None, "names": None,
                    "outputs": None, "complete": False, "batches": None,
                    "description": description or {}}
            store = cls(path, meta)
            if store._save(exclusive=True):  # False: another writer created it first
                return store
        store = cls.open(path)
        if store.meta["key"] != key:
            written = store.meta
            raise StoreError(
                f"{path} holds the outputs of another teacher or other data, or another top_k "
                f"or temperature (written with top_k={written.get('top_k')} at temperature "
                f"{written.get('temperature')}; key {written['key']}, not {key}); choose "
                "another folder or delete it.")
        store._remove_partial()
        return store

    @classmethod
    def open(cls, path):
        """The store at ``path``.

        Raises:
            StoreError: no store there, or one of another format.
        """
        path = os.fspath(path)
        try:
            with open(os.path.join(path, MANIFEST)) as f:
                meta = json.load(f)
        except FileNotFoundError:
            raise StoreError(f"{path} is not a teacher-output store (no {MANIFEST}); write one "
                             "with keras-distill label or fit(..., cache_teacher=True, "
                             "cache_dir=...).") from None
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise StoreError(f"{path}/{MANIFEST} is not a version-{VERSION} keras-distill "
                             "teacher-output store.")
        return cls(path, meta)

    def _remove_partial(self):
        """Remove the half-written shards an interrupted write left (never read): those of a
        writer of this machine that is gone (its process id is in the name), and unnamed
        ones. A live writer's are left alone."""
        for name in os.listdir(self.path):
            if not name.startswith("shard-") or ".partial" not in name:
                continue
            parts = name.split(".partial")[1].split("-")
            pid = int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else None
            if pid is None or not pid_alive(pid):
                shutil.rmtree(os.path.join(self.path, name), ignore_errors=True)

    def _save(self, exclusive=False):
        """Write the manifest whole (a temporary name of this writer's own, renamed). With
        ``exclusive``, only when there is none yet; returns whether it was written."""
        import uuid

        tmp = os.path.join(self.path, f"{MANIFEST}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        with open(tmp, "w") as f:
            json.dump(self.meta, f, indent=1)
        target = os.path.join(self.path, MANIFEST)
        if not exclusive:
            os.replace(tmp, target)
            return True
        try:
            os.link(tmp, target)  # atomic, and fails where another writer made it first
            return True
        except FileExistsError:
            return False
        finally:
            os.remove(tmp)

    def describe(self, **entries):
        """Add ``entries`` to the manifest's ``description`` (the data's fingerprint, the
        teacher's file, the source), and save it."""
        self.meta.setdefault("description", {}).update(entries)
        self._save()

    def set_outputs(self, structure, names, outputs):
        """Record how the outputs nest and what each holds (first shard)."""
        if self.meta["outputs"] is None:
            self.meta.update(structure=structure, names=names, outputs=outputs)
            self._save()

    def finish(self, samples, batches=None):
        """Mark the store complete with ``samples`` rows (and a dataset's batch sizes)."""
        missing = [i for i in range(self.shard_count(samples)) if not self.has_shard(i)]
        if missing:
            raise StoreError(f"{self.path}: shards {missing[:5]} are missing; cannot finish.")
        self.meta.update(samples=int(samples), complete=True, batches=batches)
        self._save()

    # -- shards ---------------------------------------------------------------------------

    def shard_count(self, samples=None):
        samples = self.meta["samples"] if samples is None else samples
        return -(-int(samples) // self.meta["shard_size"])

    def shard_names(self):
        """The names of the complete shards there."""
        return sorted(n for n in os.listdir(self.path)
                      if n.startswith("shard-") and ".partial" not in n)

    def has_shard(self, i):
        return os.path.isdir(os.path.join(self.path, _shard_name(i)))

    def shard_hash(self, i):
        """The inputs' hash a dataset's shard was written with, or None."""
        try:
            with open(os.path.join(self.path, _shard_name(i), "inputs.sha256")) as f:
                return f.read().strip()
        except FileNotFoundError:
            return None

    def write_shard(self, i, fields, inputs_hash=None, replace=False):
        """Write shard ``i`` whole: ``fields`` is a list (one per output) of dicts of arrays
        (:func:`encode_output`). Written to a ``.partial`` folder of this writer's own (two
        writers of one shard, such as a retried Beam bundle, never mix their files) and
        renamed. A shard already there is kept (another writer finished it first: the same
        outputs), unless ``replace`` (its inputs changed)."""
        import uuid

        final = os.path.join(self.path, _shard_name(i))
        tmp = f"{final}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.makedirs(tmp)
        for index, output in enumerate(fields):
            for field, array in output.items():
                np.save(os.path.join(tmp, f"{index}.{field}.npy"), np.ascontiguousarray(array))
        if inputs_hash is not None:
            with open(os.path.join(tmp, "inputs.sha256"), "w") as f:
                f.write(inputs_hash)
        for key in [k for k in self._maps if k[0] == i]:
            del self._maps[key]
        if replace:
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.replace(tmp, final)
        except OSError:  # a complete shard is there (another writer's): keep it
            if not os.path.isdir(final):
                raise
            shutil.rmtree(tmp, ignore_errors=True)

    def _field(self, shard, index, field):
        key = (shard, index, field)
        if key in self._maps:
            self._maps.move_to_end(key)
        else:
            while len(self._maps) >= OPEN_MAPS:
                self._maps.popitem(last=False)  # its file closes with the map
            path = os.path.join(self.path, _shard_name(shard), f"{index}.{field}.npy")
            try:
                self._maps[key] = np.load(path, mmap_mode="r")
            except FileNotFoundError:
                raise StoreError(f"{self.path}: shard {shard} lacks {index}.{field}.npy; the "
                                 "store is damaged: delete it and write it again.") from None
        return self._maps[key]

    # -- reading --------------------------------------------------------------------------

    def check_complete(self):
        if not self.meta.get("complete"):
            raise StoreError(f"{self.path} is not complete (an interrupted write): run the same "
                             "command again to finish it.")

    def outputs(self):
        """The stored outputs as lazy arrays (:class:`StoredOutputs`), nested as the teacher's
        outputs (one array, a list or a dict)."""
        self.check_complete()
        leaves = [StoredOutputs(self, i) for i in range(len(self.meta["outputs"]))]
        if self.meta["structure"] == "dict":
            return dict(zip(self.meta["names"], leaves))
        if self.meta["structure"] == "list":
            return leaves
        return leaves[0]

    def nbytes(self):
        """Bytes of the shards' fields on disk."""
        total = 0
        for root, _, files in os.walk(self.path):
            total += sum(os.path.getsize(os.path.join(root, f)) for f in files
                         if f.endswith(".npy") and ".partial" not in root)
        return total

    def full_nbytes(self):
        """Bytes the same outputs take as float32 in full (one value per class)."""
        per = sum(int(np.prod(o["shape"])) for o in self.meta["outputs"])
        return 4 * per * int(self.meta["samples"])


class StoredOutputs(LazyArray):
    """One output of a complete store, rows decoded on demand (float32, in the form the
    teacher gave: logits or probabilities)."""

    def __init__(self, store, index):
        self.store, self.index = store, index
        self.info = store.meta["outputs"][index]
        self.shape = (int(store.meta["samples"]), *self.info["shape"])
        self.dtype = np.dtype("float32")

    def _read(self, indices):
        size = self.store.meta["shard_size"]
        shards = indices // size
        parts = []
        for shard in np.unique(shards):
            rows = indices[shards == shard] - shard * size
            parts.append(self._decode({f: self.store._field(int(shard), self.index, f)[rows]
                                       for f in self._fields()}))
        return np.concatenate(parts) if parts else np.zeros((0, *self.shape[1:]), "float32")

    def _fields(self):
        return ("logits",) if self.info.get("top_k") is None else \
            ("top_logp", "top_index", "rest_logp")

    def _decode(self, fields):
        if self.info.get("top_k") is None:
            return np.asarray(fields["logits"], np.float32)
        return topk.decode(fields, self.shape[1], self.store.meta["temperature"],
                           self.info["form"])

    def identity(self):
        return {"store": os.path.abspath(self.store.path), "key": self.store.meta["key"],
                "output": self.index}


def encode_output(values, info, temperature):
    """The fields of one output's rows: ``{"logits": float32}`` or the top-k fields."""
    if info.get("top_k") is None:
        return {"logits": np.asarray(values, np.float32)}
    return topk.encode(values, info["top_k"], temperature, info["form"])
