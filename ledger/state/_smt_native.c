/* The update walk of ledger/state/smt.py (Tree.update and its _Updater), in C.
 *
 * smt.py is the reference: this file follows it function by function (subtree, _inner, _put,
 * _pair, _merge, _build), with the same cases in the same order, so that both produce the same
 * root and the same node writes for any tree and any changes (tests/ledger/state/test_smt_native.py
 * checks the two against each other; test_smt.py checks the tree against a plain dictionary). The one difference
 * is the order in which _build visits the children of a new node (nibble order here, first
 * appearance there): it changes the insertion order of the writes dictionary, not its content.
 *
 * Records are Python bytes objects; None stands for an empty subtree. Every function that makes
 * a record returns a new reference (Py_None for empty) or NULL with an exception set. Records
 * read through `get` are checked for shape before any byte of them is read: a damaged store
 * raises ValueError instead of reading out of bounds.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <openssl/sha.h>
#include <string.h>

#define RADIX 16
#define KEY 32
#define ENTRY 64                          /* key || value hash */
#define CHILDREN (32 * RADIX)             /* the children's hashes of a node record */
#define CHILDREN_END (33 + CHILDREN)      /* kind, hash, children */
#define ENTRIES_START (CHILDREN_END + 2)  /* then the mask and the lone entries */
#define LEAF_LEN (1 + 32 + ENTRY)
#define MAX_DEPTH 64
#define MAX_NAMESPACE 256
#define MAX_POS (MAX_NAMESPACE + MAX_DEPTH + 1)

static const unsigned char EMPTY[32] = {0};

typedef struct {
    const unsigned char *key;
    const unsigned char *value; /* NULL: delete */
} Item;

typedef struct {
    PyObject *get;
    PyObject *writes;
} Updater;

/* ------------------------------------------------------------------ hashing and records */

static void leaf_hash(const unsigned char *key, const unsigned char *value, unsigned char *out) {
    unsigned char buf[1 + ENTRY];
    buf[0] = 0;
    memcpy(buf + 1, key, KEY);
    memcpy(buf + 1 + KEY, value, KEY);
    SHA256(buf, sizeof buf, out);
}

static void node_hash(const unsigned char *children, unsigned char *out) {
    unsigned char buf[1 + CHILDREN];
    buf[0] = 1;
    memcpy(buf + 1, children, CHILDREN);
    SHA256(buf, sizeof buf, out);
}

static int nibble(const unsigned char *key, int depth) {
    unsigned char b = key[depth >> 1];
    return (depth & 1) ? (b & 0x0F) : (b >> 4);
}

static int popcount(unsigned int x) { return __builtin_popcount(x); }

static PyObject *leaf_record(const unsigned char *key, const unsigned char *value) {
    PyObject *rec = PyBytes_FromStringAndSize(NULL, LEAF_LEN);
    if (rec == NULL) return NULL;
    unsigned char *p = (unsigned char *)PyBytes_AS_STRING(rec);
    p[0] = 0;
    leaf_hash(key, value, p + 1);
    memcpy(p + 33, key, KEY);
    memcpy(p + 33 + KEY, value, KEY);
    return rec;
}

/* A node record from its children's hashes and its lone entries (in nibble order, `mask`
 * marking their nibbles); no mask or entries when there are none. */
static PyObject *node_record(const unsigned char *children, unsigned int mask, const unsigned char *lone,
                             Py_ssize_t lone_len) {
    Py_ssize_t len = CHILDREN_END + (mask ? 2 + lone_len : 0);
    PyObject *rec = PyBytes_FromStringAndSize(NULL, len);
    if (rec == NULL) return NULL;
    unsigned char *p = (unsigned char *)PyBytes_AS_STRING(rec);
    p[0] = 1;
    node_hash(children, p + 1);
    memcpy(p + 33, children, CHILDREN);
    if (mask) {
        p[CHILDREN_END] = (unsigned char)(mask >> 8);
        p[CHILDREN_END + 1] = (unsigned char)(mask & 0xFF);
        memcpy(p + ENTRIES_START, lone, lone_len);
    }
    return rec;
}

static int is_node(PyObject *rec) { return rec != Py_None && PyBytes_AS_STRING(rec)[0] == 1; }
static int is_leaf(PyObject *rec) { return rec != Py_None && PyBytes_AS_STRING(rec)[0] == 0; }
static const unsigned char *data(PyObject *rec) { return (const unsigned char *)PyBytes_AS_STRING(rec); }

static unsigned int mask_of(PyObject *node) {
    if (PyBytes_GET_SIZE(node) <= CHILDREN_END) return 0;
    const unsigned char *p = data(node);
    return ((unsigned int)p[CHILDREN_END] << 8) | p[CHILDREN_END + 1];
}

/* A record read from the store must have one of the shapes smt.py writes. */
static int check_record(PyObject *rec) {
    if (rec == Py_None) return 0;
    if (!PyBytes_Check(rec)) {
        PyErr_SetString(PyExc_TypeError, "a tree node record is bytes or None");
        return -1;
    }
    Py_ssize_t len = PyBytes_GET_SIZE(rec);
    const unsigned char *p = data(rec);
    if (len == LEAF_LEN && p[0] == 0) return 0;
    if (len >= CHILDREN_END && p[0] == 1) {
        if (len == CHILDREN_END) return 0;
        if (len >= ENTRIES_START) {
            unsigned int mask = mask_of(rec);
            if (mask && len == ENTRIES_START + (Py_ssize_t)ENTRY * popcount(mask)) return 0;
        }
    }
    PyErr_SetString(PyExc_ValueError, "a stored tree node record is damaged");
    return -1;
}

/* ------------------------------------------------------------------ reads and writes */

static PyObject *do_get(Updater *u, const unsigned char *pos, Py_ssize_t len) {
    PyObject *key = PyBytes_FromStringAndSize((const char *)pos, len);
    if (key == NULL) return NULL;
    PyObject *rec = PyObject_CallOneArg(u->get, key);
    Py_DECREF(key);
    if (rec == NULL) return NULL;
    if (check_record(rec) < 0) {
        Py_DECREF(rec);
        return NULL;
    }
    return rec;
}

static int do_write(Updater *u, const unsigned char *pos, Py_ssize_t len, PyObject *rec) {
    PyObject *key = PyBytes_FromStringAndSize((const char *)pos, len);
    if (key == NULL) return -1;
    int rc = PyDict_SetItem(u->writes, key, rec);
    Py_DECREF(key);
    return rc;
}

/* ------------------------------------------------------------------ the walk */

static PyObject *subtree(Updater *u, int depth, unsigned char *pos, Py_ssize_t plen, PyObject *stored,
                         const unsigned char *lone, Item *items, Py_ssize_t n);
static PyObject *inner(Updater *u, int depth, unsigned char *pos, Py_ssize_t plen, PyObject *record,
                       Item *items, Py_ssize_t n);

static int too_deep(int depth) {
    if (depth >= MAX_DEPTH) {
        PyErr_SetString(PyExc_ValueError, "a tree path is at most 64 nibbles (are the keys distinct?)");
        return 1;
    }
    return 0;
}

/* Items grouped by their nibble at `depth`, in their order: group g is out[start[g]..start[g+1]). */
static int group(Item *items, Py_ssize_t n, int depth, Item **out, Py_ssize_t start[RADIX + 1]) {
    Py_ssize_t count[RADIX] = {0};
    for (Py_ssize_t i = 0; i < n; i++) count[nibble(items[i].key, depth)]++;
    start[0] = 0;
    for (int g = 0; g < RADIX; g++) start[g + 1] = start[g] + count[g];
    Item *sorted = PyMem_Malloc(sizeof(Item) * (n ? n : 1));
    if (sorted == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t fill[RADIX];
    memcpy(fill, start, sizeof fill);
    for (Py_ssize_t i = 0; i < n; i++) sorted[fill[nibble(items[i].key, depth)]++] = items[i];
    *out = sorted;
    return 0;
}

/* The content for `entries` (all with values) at `pos`, where nothing was stored below. */
static PyObject *build(Updater *u, int depth, unsigned char *pos, Py_ssize_t plen, Item *entries, Py_ssize_t n) {
    if (n == 0) Py_RETURN_NONE;
    if (n == 1) return leaf_record(entries[0].key, entries[0].value);
    if (too_deep(depth)) return NULL;
    Item *sorted;
    Py_ssize_t start[RADIX + 1];
    if (group(entries, n, depth, &sorted, start) < 0) return NULL;
    unsigned char children[CHILDREN];
    unsigned char lone[RADIX * ENTRY];
    Py_ssize_t lone_len = 0;
    unsigned int mask = 0;
    memset(children, 0, sizeof children);
    for (int g = 0; g < RADIX; g++) {
        Py_ssize_t size = start[g + 1] - start[g];
        if (size == 0) continue;
        Item *grp = sorted + start[g];
        if (size == 1) {
            leaf_hash(grp[0].key, grp[0].value, children + 32 * g);
            memcpy(lone + lone_len, grp[0].key, KEY);
            memcpy(lone + lone_len + KEY, grp[0].value, KEY);
            lone_len += ENTRY;
            mask |= 1u << g;
            continue;
        }
        pos[plen] = (unsigned char)g;
        PyObject *child = build(u, depth + 1, pos, plen + 1, grp, size);
        if (child == NULL || do_write(u, pos, plen + 1, child) < 0) {
            Py_XDECREF(child);
            PyMem_Free(sorted);
            return NULL;
        }
        memcpy(children + 32 * g, data(child) + 1, 32);
        Py_DECREF(child);
    }
    PyMem_Free(sorted);
    return node_record(children, mask, lone, lone_len);
}

/* The new content at `pos` after `items` (all on this path), given the record stored there
 * and the lone entry (key || value) its parent keeps for it, if any. */
static PyObject *subtree(Updater *u, int depth, unsigned char *pos, Py_ssize_t plen, PyObject *stored,
                         const unsigned char *lone, Item *items, Py_ssize_t n) {
    if (is_node(stored)) return inner(u, depth, pos, plen, stored, items, n);
    if (stored == Py_None && lone == NULL && n == 1) {
        if (items[0].value == NULL) Py_RETURN_NONE;
        return leaf_record(items[0].key, items[0].value);
    }
    /* the entry already here (kept by the parent, or at its own position), then the items in
     * order: a dictionary's reading, the keys of `items` being distinct */
    const unsigned char *here = lone != NULL ? lone : (stored != Py_None ? data(stored) + 33 : NULL);
    Item *entries = PyMem_Malloc(sizeof(Item) * (n + 1));
    if (entries == NULL) return PyErr_NoMemory();
    Py_ssize_t m = 0;
    if (here != NULL) {
        Item first = {here, here + KEY};
        int deleted = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            if (memcmp(items[i].key, here, KEY) == 0) {
                if (items[i].value == NULL) deleted = 1;
                else first.value = items[i].value;
            }
        }
        if (!deleted) entries[m++] = first;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (items[i].value == NULL) continue;
        if (here != NULL && memcmp(items[i].key, here, KEY) == 0) continue;
        entries[m++] = items[i];
    }
    PyObject *out = build(u, depth, pos, plen, entries, m);
    PyMem_Free(entries);
    return out;
}

/* Store the subtree at `pos` holding a lone entry (`entry`, `digest` its leaf hash) and a new
 * key, with nodes of one child down to where their paths part; its hash goes to `out`. */
static int pair(Updater *u, int depth, unsigned char *pos, Py_ssize_t plen, const unsigned char *entry,
                const unsigned char *digest, const unsigned char *key, const unsigned char *value,
                unsigned char *out) {
    Py_ssize_t top_len = plen;
    int a, b;
    for (;;) {
        if (too_deep(depth)) return -1;
        a = nibble(entry, depth);
        b = nibble(key, depth);
        if (a != b) break;
        pos[plen++] = (unsigned char)a;
        depth++;
    }
    unsigned char children[CHILDREN];
    memset(children, 0, sizeof children);
    memcpy(children + 32 * a, digest, 32);
    leaf_hash(key, value, children + 32 * b);
    unsigned char lone[2 * ENTRY];
    const unsigned char *low_key = a < b ? entry : key, *low_value = a < b ? entry + KEY : value;
    const unsigned char *high_key = a < b ? key : entry, *high_value = a < b ? value : entry + KEY;
    memcpy(lone, low_key, KEY);
    memcpy(lone + KEY, low_value, KEY);
    memcpy(lone + ENTRY, high_key, KEY);
    memcpy(lone + ENTRY + KEY, high_value, KEY);
    PyObject *rec = node_record(children, (1u << a) | (1u << b), lone, sizeof lone);
    if (rec == NULL) return -1;
    unsigned char hash[32];
    memcpy(hash, data(rec) + 1, 32);
    int rc = do_write(u, pos, plen, rec);
    Py_DECREF(rec);
    if (rc < 0) return -1;
    /* the nodes of one child above, from the deepest up */
    for (Py_ssize_t at = plen - 1; at >= top_len; at--) {
        int n = pos[at];
        memset(children, 0, sizeof children);
        memcpy(children + 32 * n, hash, 32);
        rec = node_record(children, 0, NULL, 0);
        if (rec == NULL) return -1;
        memcpy(hash, data(rec) + 1, 32);
        rc = do_write(u, pos, at, rec);
        Py_DECREF(rec);
        if (rc < 0) return -1;
    }
    memcpy(out, hash, 32);
    return 0;
}

static PyObject *merge(Updater *u, int depth, unsigned char *pos, Py_ssize_t plen, PyObject *record,
                       Item *items, Py_ssize_t n);

/* The node record at `pos` after one key is set (the usual update, a path each). Returns a new
 * reference to `record` itself when nothing changes. */
static PyObject *put(Updater *u, int depth, unsigned char *pos, Py_ssize_t plen, PyObject *record,
                     const unsigned char *key, const unsigned char *value) {
    if (too_deep(depth)) return NULL;
    const unsigned char *r = data(record);
    Py_ssize_t rlen = PyBytes_GET_SIZE(record);
    int n = nibble(key, depth);
    Py_ssize_t at = 33 + 32 * n;
    unsigned int bit = 1u << n;
    unsigned int mask = mask_of(record);
    Py_ssize_t start = ENTRIES_START + (Py_ssize_t)ENTRY * popcount(mask & (bit - 1));
    const unsigned char *entries = r + ENTRIES_START;
    Py_ssize_t entries_len = rlen > CHILDREN_END ? rlen - ENTRIES_START : 0;
    Py_ssize_t cut = start - ENTRIES_START;
    unsigned char digest[32];
    unsigned char new_entries[RADIX * ENTRY];
    Py_ssize_t new_len;
    if (mask & bit) {
        if (memcmp(r + start, key, KEY) == 0) {
            if (memcmp(r + start + KEY, value, KEY) == 0) {
                Py_INCREF(record);
                return record;
            }
            leaf_hash(key, value, digest);
            memcpy(new_entries, entries, entries_len);
            memcpy(new_entries + cut + KEY, value, KEY);
            new_len = entries_len;
        } else { /* the slot's lone entry and the new one move down into a node of their own */
            pos[plen] = (unsigned char)n;
            if (pair(u, depth + 1, pos, plen + 1, r + start, r + at, key, value, digest) < 0) return NULL;
            mask ^= bit;
            memcpy(new_entries, entries, cut);
            memcpy(new_entries + cut, entries + cut + ENTRY, entries_len - cut - ENTRY);
            new_len = entries_len - ENTRY;
        }
    } else if (memcmp(r + at, EMPTY, 32) == 0) { /* a new lone entry */
        leaf_hash(key, value, digest);
        mask |= bit;
        memcpy(new_entries, entries, cut);
        memcpy(new_entries + cut, key, KEY);
        memcpy(new_entries + cut + KEY, value, KEY);
        memcpy(new_entries + cut + ENTRY, entries + cut, entries_len - cut);
        new_len = entries_len + ENTRY;
    } else {
        pos[plen] = (unsigned char)n;
        PyObject *stored = do_get(u, pos, plen + 1);
        if (stored == NULL) return NULL;
        if (!is_node(stored)) { /* a lone entry at its own position (older stores) */
            Py_DECREF(stored);
            Item one = {key, value};
            return merge(u, depth, pos, plen, record, &one, 1);
        }
        PyObject *child = put(u, depth + 1, pos, plen + 1, stored, key, value);
        if (child == NULL) {
            Py_DECREF(stored);
            return NULL;
        }
        if (child == stored) {
            Py_DECREF(child);
            Py_DECREF(stored);
            Py_INCREF(record);
            return record;
        }
        Py_DECREF(stored);
        pos[plen] = (unsigned char)n;
        int rc = do_write(u, pos, plen + 1, child);
        memcpy(digest, data(child) + 1, 32);
        Py_DECREF(child);
        if (rc < 0) return NULL;
        memcpy(new_entries, entries, entries_len);
        new_len = entries_len;
    }
    unsigned char children[CHILDREN];
    memcpy(children, r + 33, CHILDREN);
    memcpy(children + 32 * n, digest, 32);
    return node_record(children, mask, new_entries, mask ? new_len : 0);
}

/* The new content at `pos`, where the inner node `record` is stored. */
static PyObject *inner(Updater *u, int depth, unsigned char *pos, Py_ssize_t plen, PyObject *record,
                       Item *items, Py_ssize_t n) {
    if (n == 1 && items[0].value != NULL) return put(u, depth, pos, plen, record, items[0].key, items[0].value);
    return merge(u, depth, pos, plen, record, items, n);
}

/* inner() for any number of items, deletions included. */
static PyObject *merge(Updater *u, int depth, unsigned char *pos, Py_ssize_t plen, PyObject *record,
                       Item *items, Py_ssize_t n) {
    if (too_deep(depth)) return NULL;
    const unsigned char *r = data(record);
    Py_ssize_t rlen = PyBytes_GET_SIZE(record);
    unsigned char children[CHILDREN];
    memcpy(children, r + 33, CHILDREN);
    unsigned int mask = mask_of(record);
    /* the lone entries, edited in place: in nibble order, the children visited from the
     * highest nibble down, so an edit never moves an entry still to visit */
    unsigned char lone[RADIX * ENTRY];
    Py_ssize_t lone_len = rlen > CHILDREN_END ? rlen - ENTRIES_START : 0;
    memcpy(lone, r + ENTRIES_START, lone_len);
    int shrunk = 0;
    Item *sorted;
    Py_ssize_t start[RADIX + 1];
    if (group(items, n, depth, &sorted, start) < 0) return NULL;
    for (int g = RADIX - 1; g >= 0; g--) {
        Py_ssize_t size = start[g + 1] - start[g];
        if (size == 0) continue;
        Item *grp = sorted + start[g];
        Py_ssize_t at = 32 * g;
        unsigned int bit = 1u << g;
        Py_ssize_t offset = (Py_ssize_t)ENTRY * popcount(mask & (bit - 1));
        pos[plen] = (unsigned char)g;
        if (size == 1 && grp[0].value != NULL) { /* one key set here: the cases that never shrink this node */
            const unsigned char *key = grp[0].key, *value = grp[0].value;
            if (mask & bit) {
                if (memcmp(lone + offset, key, KEY) == 0) { /* a new value for a lone entry */
                    leaf_hash(key, value, children + at);
                    memcpy(lone + offset + KEY, value, KEY);
                } else { /* a new key where a lone entry is: the two move down into a node */
                    unsigned char entry[ENTRY], digest[32], old[32];
                    memcpy(entry, lone + offset, ENTRY);
                    memcpy(old, children + at, 32);
                    if (pair(u, depth + 1, pos, plen + 1, entry, old, key, value, digest) < 0) goto fail;
                    memcpy(children + at, digest, 32);
                    memmove(lone + offset, lone + offset + ENTRY, lone_len - offset - ENTRY);
                    lone_len -= ENTRY;
                    mask ^= bit;
                }
                continue;
            }
            if (memcmp(children + at, EMPTY, 32) == 0) { /* a new lone entry */
                leaf_hash(key, value, children + at);
                memmove(lone + offset + ENTRY, lone + offset, lone_len - offset);
                memcpy(lone + offset, key, KEY);
                memcpy(lone + offset + KEY, value, KEY);
                lone_len += ENTRY;
                mask |= bit;
                continue;
            }
        }
        unsigned char child_lone[ENTRY];
        const unsigned char *child_lone_p = NULL;
        PyObject *stored;
        if (mask & bit) {
            memcpy(child_lone, lone + offset, ENTRY);
            child_lone_p = child_lone;
            stored = Py_None;
            Py_INCREF(stored);
        } else if (memcmp(children + at, EMPTY, 32) == 0) {
            stored = Py_None;
            Py_INCREF(stored);
        } else {
            stored = do_get(u, pos, plen + 1);
            if (stored == NULL) goto fail;
        }
        PyObject *child = is_node(stored) ? inner(u, depth + 1, pos, plen + 1, stored, grp, size)
                                          : subtree(u, depth + 1, pos, plen + 1, stored, child_lone_p, grp, size);
        if (child == NULL) {
            Py_DECREF(stored);
            goto fail;
        }
        pos[plen] = (unsigned char)g;
        if (child == Py_None) {
            memset(children + at, 0, 32);
            shrunk = 1;
        } else {
            memcpy(children + at, data(child) + 1, 32);
        }
        if (is_leaf(child)) { /* kept here, and nothing at its position */
            if (mask & bit) {
                memcpy(lone + offset, data(child) + 33, ENTRY);
            } else {
                memmove(lone + offset + ENTRY, lone + offset, lone_len - offset);
                memcpy(lone + offset, data(child) + 33, ENTRY);
                lone_len += ENTRY;
                mask |= bit;
            }
            int rc = 0;
            if (stored != Py_None) { /* a node became a lone entry: this node may have to go */
                shrunk = 1;
                rc = do_write(u, pos, plen + 1, Py_None);
            }
            Py_DECREF(child);
            Py_DECREF(stored);
            if (rc < 0) goto fail;
            continue;
        }
        if (mask & bit) {
            memmove(lone + offset, lone + offset + ENTRY, lone_len - offset - ENTRY);
            lone_len -= ENTRY;
            mask ^= bit;
        }
        int rc = 0;
        if (child != Py_None) {
            int same = stored != Py_None && PyBytes_GET_SIZE(child) == PyBytes_GET_SIZE(stored) &&
                       memcmp(data(child), data(stored), PyBytes_GET_SIZE(child)) == 0;
            if (!same) rc = do_write(u, pos, plen + 1, child);
        } else if (stored != Py_None) {
            rc = do_write(u, pos, plen + 1, Py_None);
        }
        Py_DECREF(child);
        Py_DECREF(stored);
        if (rc < 0) goto fail;
    }
    PyMem_Free(sorted);
    sorted = NULL;
    if (shrunk) {
        int occupied[2], count = 0;
        for (int i = 0; i < RADIX && count < 2; i++)
            if (memcmp(children + 32 * i, EMPTY, 32) != 0) occupied[count++] = i;
        if (count == 0) Py_RETURN_NONE;
        if (count == 1) { /* a lone entry beside empty subtrees moves up */
            int only = occupied[0];
            if (mask) {
                PyObject *rec = PyBytes_FromStringAndSize(NULL, LEAF_LEN);
                if (rec == NULL) return NULL;
                unsigned char *p = (unsigned char *)PyBytes_AS_STRING(rec);
                p[0] = 0;
                memcpy(p + 1, children + 32 * only, 32);
                memcpy(p + 33, lone, ENTRY);
                return rec;
            }
            pos[plen] = (unsigned char)only;
            PyObject *key = PyBytes_FromStringAndSize((const char *)pos, plen + 1);
            if (key == NULL) return NULL;
            PyObject *kept = PyDict_GetItemWithError(u->writes, key); /* borrowed */
            if (kept != NULL) {
                Py_INCREF(kept);
            } else if (PyErr_Occurred()) {
                Py_DECREF(key);
                return NULL;
            } else {
                kept = do_get(u, pos, plen + 1);
                if (kept == NULL) {
                    Py_DECREF(key);
                    return NULL;
                }
            }
            if (is_leaf(kept)) { /* kept at its own position (older stores) */
                int rc = PyDict_SetItem(u->writes, key, Py_None);
                Py_DECREF(key);
                if (rc < 0) {
                    Py_DECREF(kept);
                    return NULL;
                }
                return kept;
            }
            Py_DECREF(key);
            Py_DECREF(kept);
        }
    }
    return node_record(children, mask, lone, lone_len);
fail:
    PyMem_Free(sorted);
    return NULL;
}

/* ------------------------------------------------------------------ the entry point */

static PyObject *update(PyObject *self, PyObject *args) {
    PyObject *namespace, *get, *changes;
    if (!PyArg_ParseTuple(args, "O!OO!:update", &PyBytes_Type, &namespace, &get, &PyDict_Type, &changes))
        return NULL;
    Py_ssize_t ns_len = PyBytes_GET_SIZE(namespace);
    if (ns_len > MAX_NAMESPACE) {
        PyErr_SetString(PyExc_ValueError, "a tree namespace is at most 256 bytes");
        return NULL;
    }
    Py_ssize_t n = PyDict_GET_SIZE(changes);
    if (n == 0) {
        PyErr_SetString(PyExc_ValueError, "no changes");
        return NULL;
    }
    /* the items point into the keys and values: `held` keeps them alive whatever `get` does */
    PyObject *held = PyDict_Items(changes);
    if (held == NULL) return NULL;
    Item *items = PyMem_Malloc(sizeof(Item) * n);
    if (items == NULL) {
        Py_DECREF(held);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PyList_GET_ITEM(held, i);
        PyObject *k = PyTuple_GET_ITEM(pair, 0), *v = PyTuple_GET_ITEM(pair, 1);
        if (!PyBytes_Check(k) || PyBytes_GET_SIZE(k) != KEY ||
            (v != Py_None && (!PyBytes_Check(v) || PyBytes_GET_SIZE(v) != KEY))) {
            PyMem_Free(items);
            Py_DECREF(held);
            PyErr_SetString(PyExc_ValueError, "tree keys and values are 32-byte hashes");
            return NULL;
        }
        items[i].key = data(k);
        items[i].value = v == Py_None ? NULL : data(v);
    }
    unsigned char pos[MAX_POS];
    memcpy(pos, PyBytes_AS_STRING(namespace), ns_len);
    Updater u = {get, PyDict_New()};
    PyObject *record = NULL, *result = NULL;
    if (u.writes == NULL) goto done;
    PyObject *stored = do_get(&u, pos, ns_len);
    if (stored == NULL) goto done;
    if (n == 1 && is_node(stored) && items[0].value != NULL) { /* one key, below a node: a path */
        record = put(&u, 0, pos, ns_len, stored, items[0].key, items[0].value);
    } else {
        record = subtree(&u, 0, pos, ns_len, stored, NULL, items, n);
    }
    if (record == NULL) {
        Py_DECREF(stored);
        goto done;
    }
    int same = record == stored ||
               (record != Py_None && stored != Py_None && PyBytes_GET_SIZE(record) == PyBytes_GET_SIZE(stored) &&
                memcmp(data(record), data(stored), PyBytes_GET_SIZE(record)) == 0) ||
               (record == Py_None && stored == Py_None);
    Py_DECREF(stored);
    /* the root is kept at its position even when it is a lone entry */
    if (!same && do_write(&u, pos, ns_len, record) < 0) goto done;
    PyObject *root = record == Py_None ? PyBytes_FromStringAndSize((const char *)EMPTY, 32)
                                       : PyBytes_FromStringAndSize((const char *)data(record) + 1, 32);
    if (root == NULL) goto done;
    result = PyTuple_Pack(2, root, u.writes);
    Py_DECREF(root);
done:
    Py_XDECREF(record);
    Py_XDECREF(u.writes);
    PyMem_Free(items);
    Py_DECREF(held);
    return result;
}

static PyMethodDef methods[] = {
    {"update", update, METH_VARARGS,
     "update(namespace, get, changes) -> (root, writes): Tree.update of ledger/state/smt.py."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_smt_native", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__smt_native(void) { return PyModule_Create(&module); }
