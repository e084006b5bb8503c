#!/usr/bin/python3
"""Checks the layering of kiln's sources: every folder includes only headers
of its own folder or of folders below it, and no two files of a folder
include each other (directly or in a circle). Prints one line per offence."""
import os
import re
import sys

ROOT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), '..', '..')
# Lowest first; a folder may use any folder before it in this list.
LAYERS = ['util', 'blake3', 'castore', 'rpc', 'store', 'ingest', 'build', 'nix',
          'nixbuild', 'fuse', 'runner', 'daemon', 'cli']
# Folders at the same height that must not see each other.
SIBLINGS = [{'ingest', 'build', 'nix'}]
SRC = {'util': 'src/lib/util', 'blake3': 'src/lib/blake3', 'castore': 'src/lib/castore',
       'rpc': 'src/lib/rpc', 'store': 'src/lib/store', 'ingest': 'src/lib/ingest',
       'build': 'src/lib/build', 'nix': 'src/lib/nix',
       'nixbuild': 'src/lib/nixbuild', 'fuse': 'src/fuse',
       'runner': 'src/runner', 'daemon': 'src/daemon', 'cli': 'src/cli'}
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)

def folder_of(path):
    rel = os.path.relpath(path, ROOT)
    if rel.startswith('include/kiln/'):
        return rel.split('/')[2]
    for name, d in SRC.items():
        if rel.startswith(d + '/'):
            return name
    return None

def rank(name):
    return LAYERS.index(name)

def allowed(user, used):
    if user == used:
        return True
    if any(user in s and used in s for s in SIBLINGS):
        return False
    return rank(used) < rank(user)

files = []
for top in ['include/kiln', 'src']:
    for dirpath, _, names in os.walk(os.path.join(ROOT, top)):
        files += [os.path.join(dirpath, n) for n in names if n.endswith(('.c', '.h'))]

bad = 0
edges = {}
for f in sorted(files):
    user = folder_of(f)
    if user is None:
        continue
    text = open(f, encoding='utf-8').read()
    for kind, inc in INCLUDE.findall(text):
        if kind == '<':
            if not inc.startswith('kiln/'):
                continue
            target = os.path.join(ROOT, 'include', inc)
        else:
            target = os.path.normpath(os.path.join(os.path.dirname(f), inc))
            if not os.path.exists(target):
                continue  # generated (protobuf-c, kiln_config.h)
        used = folder_of(target)
        if used is None:
            continue
        if not allowed(user, used):
            print(f'{os.path.relpath(f, ROOT)}: includes {inc} from {used}/, '
                  f'which is not below {user}/')
            bad += 1
        edges.setdefault(os.path.realpath(f), set()).add(os.path.realpath(target))

# Circles among headers (an include circle can only close through headers).
state = {}
def visit(n, stack):
    state[n] = 1
    for m in edges.get(n, ()):
        if state.get(m) == 1:
            cyc = stack[stack.index(m):] + [m]
            print('include circle: ' + ' -> '.join(os.path.relpath(x, ROOT) for x in cyc))
            global bad
            bad += 1
        elif m not in state:
            visit(m, stack + [m])
    state[n] = 2
for n in list(edges):
    if n not in state:
        visit(n, [n])

sys.exit(1 if bad else 0)
