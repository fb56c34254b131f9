/*
 * A model of one node's fence exchange between fence_gfs2_recorder and
 * nnf-sos, with Pacemaker around it. docs/MODEL.md explains it; run it
 * with scripts/model-check.sh (make model-check).
 *
 * Processes:
 *   Pacemaker    runs the attempts of one fence operation one after the
 *                other (the device runs one action at a time), SIGKILLs an
 *                attempt at its action timeout, retries a failed or killed
 *                attempt, and once the operation is over runs `on`.
 *   Agent(id)    one attempt (`off`/`reboot`) with its own request id.
 *   BlockStorage nnf-sos's NnfNodeBlockStorage reconciler: it scans the
 *                request dir, reads a request, detaches the storage, writes
 *                the answer to a dot-temp and renames it into place, then
 *                deletes the request (the "rename" path).
 *   NodeWatcher  nnf-sos's NnfNode request watcher for a node with nothing
 *                to detach: it reads a request, writes the answer IN PLACE
 *                (open O_CREAT|O_TRUNC, then write), then deletes the
 *                request (the "in-place" path).
 * Both nnf-sos processes can lose what they have read (the pod restarts)
 * and may act at any time, also long after a request was published, which
 * covers its start-up scan of requests left while it was down.
 *
 * Variants (compile-time):
 *   (none)              the agent as the unfencing fixes intend it
 *   PRE_FIX             the agent before the fixes: `on` does not withdraw
 *                       pending requests and ignores responses still being
 *                       written; a timeout record says "withdrawn" whenever
 *                       the unlink worked
 *   ALREADY_OFF         the intended agent, plus fencing.py's shortcut of
 *                       reporting success without a request when `status`
 *                       already says the node is off
 *   RECORD_BEFORE_UNLINK  the intended agent, but it decides what its timeout
 *                       record says before it unlinks the request
 *   NATT=<n>            attempts Pacemaker may make (default 2)
 */

#ifndef NATT
#define NATT 2
#endif

/* a response file <response dir>/<id>.json */
mtype = { NONE, PARTIAL, OK, FAIL };
/* how an attempt ended */
mtype = { IDLE, RUNNING, EXIT0, EXIT1, KILLED };
/* what the final record of a timed-out attempt says about its request */
mtype = { NOREC, TAKEN, WITHDRAWN_UNREAD, WITHDRAWN_READ };
/* which nnf-sos path answered */
mtype = { NOPATH, RENAME, INPLACE };

/* the file system */
bool  req[NATT + 1];            /* <request dir>/<id>.json exists */
mtype resp[NATT + 1] = NONE;    /* <response dir>/<id>.json */
byte  nreq;                     /* how many request files exist */

/* the agent and Pacemaker */
mtype result[NATT + 1] = IDLE;
mtype record[NATT + 1] = NOREC;
bool  killed[NATT + 1];
bool  gone[NATT + 1];           /* the attempt's process has ended */
bool  on_returned;              /* `on` has returned (exit 0) */

/* nnf-sos's storage side: the path is fixed per run (storage found or not) */
mtype path = NOPATH;

/* ghost variables: history, read only by the properties */
bool  read_by_sos[NATT + 1];    /* nnf-sos has read the request's content */
bool  answered[NATT + 1];       /* nnf-sos wrote an answer for id */
bool  answered_ok[NATT + 1];    /* ... and it said success */
bool  left_by_on[NATT + 1];     /* `on` saw it being written and left it */
bool  exit0_unanswered;         /* an attempt exited 0 without a success answer for its id */
bool  lying_record;             /* a record said "withdrawn before the storage side read it", yet it was answered */
bool  refenced;                 /* a success answer was written after `on` returned */
mtype refence_path = NOPATH;
bool  refence_partial;          /* ... by finishing a response `on` had left */
bool  refence_timed_out;        /* ... for an attempt that had timed out and withdrawn it */
bool  read_after_on[NATT + 1];  /* nnf-sos read the request after `on` had returned */
bool  refence_read_after_on;    /* ... answering a request read after `on` returned */

/* unlink a request file, if it is there */
inline unlink_req(i) {
    if
    :: req[i] -> req[i] = false; nreq--
    :: else -> skip
    fi
}

/* nnf-sos has just written an answer for i (ok: success) */
inline note_answer(i, ok, via) {
    answered[i] = true;
    if
    :: ok -> answered_ok[i] = true
    :: else -> skip
    fi;
    if
    :: record[i] == WITHDRAWN_UNREAD -> lying_record = true
    :: else -> skip
    fi;
    if
    :: ok && on_returned ->
        refenced = true; refence_path = via;
        if
        :: left_by_on[i] -> refence_partial = true
        :: else -> skip
        fi;
        if
        :: read_after_on[i] -> refence_read_after_on = true
        :: else -> skip
        fi;
        if
        :: record[i] == WITHDRAWN_READ || record[i] == WITHDRAWN_UNREAD -> refence_timed_out = true
        :: else -> skip
        fi;
        printf("MSC: RE-FENCED: nnf-sos answers request %d with success after `on` returned\n", i)
    :: else -> skip
    fi
}

/* ------------------------------------------------------------------ */
/* the agent: src/exchange.rs fence() and withdraw()                   */

proctype Agent(byte id) {
#ifdef ALREADY_OFF
    byte j;
#endif
#ifdef RECORD_BEFORE_UNLINK
    bool saw_read;
#endif
    {
#ifdef ALREADY_OFF
        /* fencing.py's fence_action: status says OFF, so report success */
        atomic {
            j = 1;
            do
            :: j <= NATT && resp[j] == OK ->
                printf("MSC: agent %d: a success record exists (%d): \"Already OFF\", exit 0\n", id, j);
                result[id] = EXIT0;
                if
                :: !answered_ok[id] -> exit0_unanswered = true
                :: else -> skip
                fi;
                break
            :: j <= NATT && resp[j] != OK -> j++
            :: j > NATT -> break
            od
        };
        if
        :: result[id] == EXIT0 -> goto finished
        :: else -> skip
        fi;
#endif
        /* spool::write_atomic: the dot-temp is renamed into place */
        atomic {
            req[id] = true; nreq++;
            printf("MSC: agent %d publishes request %d (rename)\n", id, id)
        };
        /* wait::wait_for_response: only <id>.json is looked at; a file
           being written (PARTIAL) is not an answer yet */
        do
        :: atomic {
               resp[id] == OK ->
               result[id] = EXIT0;
               if
               :: !answered_ok[id] -> exit0_unanswered = true
               :: else -> skip
               fi;
               printf("MSC: agent %d reads the success answer, exit 0\n", id)
           };
           break
        :: atomic {
               resp[id] == FAIL ->
               result[id] = EXIT1;
               printf("MSC: agent %d reads a failure answer, exit 1\n", id)
           };
           break
        :: /* fence_timeout passes (the deadline may come at any moment) */
#ifdef RECORD_BEFORE_UNLINK
           /* looks whether the storage side has read the request first,
              and unlinks it in a second step */
           atomic {
               saw_read = read_by_sos[id];
               printf("MSC: agent %d times out, looks whether request %d was read: %d\n", id, id, saw_read)
           };
#endif
           atomic {
               if
               :: req[id] ->
                   unlink_req(id);
#if defined(PRE_FIX)
                   record[id] = WITHDRAWN_UNREAD;
#elif defined(RECORD_BEFORE_UNLINK)
                   if
                   :: saw_read -> record[id] = WITHDRAWN_READ
                   :: else -> record[id] = WITHDRAWN_UNREAD
                   fi;
#else
                   /* the record says whether the storage side had read it,
                      as seen once the request is gone (nothing can read it
                      after the unlink) */
                   if
                   :: read_by_sos[id] -> record[id] = WITHDRAWN_READ
                   :: else -> record[id] = WITHDRAWN_UNREAD
                   fi;
#endif
                   if
                   :: record[id] == WITHDRAWN_UNREAD && answered[id] -> lying_record = true
                   :: else -> skip
                   fi;
                   printf("MSC: agent %d times out, withdraws request %d, record: %e\n", id, id, record[id])
               :: !req[id] ->
                   /* (not `else`: this `if` opens a `do` option, so an
                      `else` here would also wait for no answer to exist) */
                   record[id] = TAKEN;
                   printf("MSC: agent %d times out, request %d already taken\n", id, id)
               fi;
               result[id] = EXIT1
           };
           break
        od;
finished:
        skip
    } unless {
        atomic {
            killed[id] ->
            result[id] = KILLED;
            printf("MSC: agent %d SIGKILLed by Pacemaker (request %d left as it is)\n", id, id)
        }
    };
    gone[id] = true
}

/* ------------------------------------------------------------------ */
/* nnf-sos, rename path: nnf_node_block_storage_controller.go           */
/* scanFenceRequests, processFenceRequests, writeFenceResponse          */

proctype BlockStorage() {
    byte id, held;
    bool ok;
end_idle:
    do
    :: path == RENAME ->
        /* a reconcile scans the request dir and reads one request */
        atomic {
            select(id : 1 .. NATT);
            if
            :: req[id] && resp[id] != NONE ->
                /* the response exists already: clean up the orphan */
                unlink_req(id);
                printf("MSC: nnf-sos (block storage) finds response %d already there, deletes request %d\n", id, id)
            :: req[id] && resp[id] == NONE ->
                read_by_sos[id] = true; read_after_on[id] = on_returned; held = id;
                printf("MSC: nnf-sos (block storage) reads request %d\n", id)
            :: else -> skip
            fi
        };
        if
        :: held != 0 ->
            /* the delay: list the storage, delete its storage groups
               (or fail to); the pod may restart at any point and forget */
            if
            :: ok = true
            :: ok = false
            :: held = 0; printf("MSC: nnf-sos restarts, forgets what it read\n")
            fi;
            if
            :: held != 0 ->
                /* write the dot-temp, rename it over <id>.json */
                atomic {
                    if
                    :: ok -> resp[held] = OK
                    :: else -> resp[held] = FAIL
                    fi;
                    if
                    :: ok -> printf("MSC: nnf-sos (block storage) detaches the storage, renames success answer %d into place\n", held)
                    :: else -> printf("MSC: nnf-sos (block storage) fails to detach, renames failure answer %d into place\n", held)
                    fi;
                    note_answer(held, ok, RENAME)
                };
                /* then deletes the request it read (an error if gone),
                   unless the pod restarts first */
                if
                :: atomic {
                       unlink_req(held);
                       printf("MSC: nnf-sos (block storage) deletes request %d\n", held);
                       held = 0
                   }
                :: held = 0; printf("MSC: nnf-sos restarts before deleting the request\n")
                fi
            :: else -> skip
            fi
        :: else -> skip
        fi
    od
}

/* ------------------------------------------------------------------ */
/* nnf-sos, in-place path: nnf_node_controller.go                       */
/* watchFenceRequests (start-up scan, Create events), processFenceRequest */

proctype NodeWatcher() {
    byte id, held;
end_idle:
    do
    :: path == INPLACE ->
        atomic {
            select(id : 1 .. NATT);
            if
            :: req[id] ->
                read_by_sos[id] = true; read_after_on[id] = on_returned; held = id;
                printf("MSC: nnf-sos (node watcher) reads request %d\n", id)
            :: else -> skip
            fi
        };
        if
        :: held != 0 ->
            /* the delay: triggerBlockStorageReconciles lists the storage */
            if
            :: skip
            :: held = 0; printf("MSC: nnf-sos restarts, forgets what it read\n")
            fi;
            if
            :: held != 0 ->
                /* os.WriteFile: open(O_CREAT|O_TRUNC) ... */
                atomic {
                    resp[held] = PARTIAL;
                    printf("MSC: nnf-sos (node watcher) creates response %d in place (empty)\n", held)
                };
                if
                :: skip
                :: /* the pod dies mid-write: the file stays partial */
                   held = 0; printf("MSC: nnf-sos restarts mid-write, response left partial\n")
                fi;
                if
                :: held != 0 ->
                    /* ... write(2) */
                    atomic {
                        if
                        :: resp[held] == PARTIAL ->
                            resp[held] = OK;
                            printf("MSC: nnf-sos (node watcher) finishes writing success response %d\n", held);
                            note_answer(held, true, INPLACE)
                        :: else ->
                            /* unlinked meanwhile: the bytes go to the orphaned
                               inode. Unreached with the `on` modelled here,
                               which never unlinks a file being written. */
                            printf("MSC: nnf-sos (node watcher) writes into unlinked response %d\n", held)
                        fi
                    };
                    if
                    :: atomic {
                           unlink_req(held);
                           printf("MSC: nnf-sos (node watcher) deletes request %d\n", held);
                           held = 0
                       }
                    :: held = 0; printf("MSC: nnf-sos restarts before deleting the request\n")
                    fi
                :: else -> skip
                fi
            :: else -> skip
            fi
        :: else -> skip
        fi
    od
}

/* ------------------------------------------------------------------ */
/* `on` (unfence): src/fenced.rs unfence()                              */

inline unfence(i) {
    printf("MSC: Pacemaker runs `on`\n");
#ifndef PRE_FIX
    /* 1. withdraw the node's pending requests */
    i = 1;
    do
    :: i <= NATT ->
        atomic {
            if
            :: req[i] ->
                unlink_req(i);
                printf("MSC: `on` withdraws pending request %d\n", i)
            :: else -> skip
            fi
        };
        i++
    :: else -> break
    od;
#endif
    /* 2. remove the node's success responses */
    i = 1;
    do
    :: i <= NATT ->
#ifndef PRE_FIX
        /* a young response still being written: wait for it, within a bound */
        if
        :: resp[i] == PARTIAL ->
            printf("MSC: `on` sees response %d being written, waits\n", i);
            do
            :: resp[i] != PARTIAL -> break
            :: atomic {
                   resp[i] == PARTIAL ->
                   left_by_on[i] = true;
                   printf("MSC: `on` gives up waiting for response %d (bound), leaves it\n", i)
               };
               break
            od
        :: else -> skip
        fi;
#endif
        atomic {
            if
            :: resp[i] == OK ->
                resp[i] = NONE;
                printf("MSC: `on` removes success response %d\n", i)
            :: else -> skip
            fi
        };
        i++
    :: else -> break
    od;
    atomic {
        printf("MSC: `on` returns 0 (unfenced)\n");
        on_returned = true
    }
}

/* ------------------------------------------------------------------ */

proctype Pacemaker() {
    byte a = 1, i;
    do
    :: a <= NATT ->
        result[a] = RUNNING;
        run Agent(a);
        if
        :: result[a] != RUNNING
        :: atomic { result[a] == RUNNING -> killed[a] = true }   /* action timeout */
        fi;
        gone[a];
        if
        :: result[a] == EXIT0 -> break
        :: else ->
            if
            :: a++          /* retry (pcmk_off_retries) or a new fence request */
            :: break        /* give up */
            fi
        fi
    :: else -> break
    od;
    /* the fence operation is over; the node (or an operator) unfences */
    unfence(i)
}

init {
    atomic {
        if
        :: path = RENAME     /* nnf-sos finds the node's GFS2 storage */
        :: path = INPLACE    /* nothing to detach */
        fi;
        run BlockStorage();
        run NodeWatcher();
        run Pacemaker()
    }
}

/* ------------------------------------------------------------------ */
/* properties (scripts/model-check.sh says which must hold per variant) */

/* exit 0 only on a success answer for the attempt's own request id */
ltl exit0_means_answered { [] !exit0_unanswered }
/* after `on` returns, no request of the node is left */
ltl on_leaves_no_request { [] (on_returned -> nreq == 0) }
/* "withdrawn before the storage side read it" is never followed by an answer */
ltl honest_timeout_record { [] !lying_record }
/* nothing re-fences the node after `on` (the remaining nnf-sos race) */
ltl no_refence_after_on { [] !refenced }
/* the same, one way at a time, to get one readable trail per way */
ltl no_refence_rename { [] !(refenced && refence_path == RENAME) }
ltl no_refence_inplace_read_before_on { [] !(refenced && refence_path == INPLACE && !refence_partial) }
ltl no_refence_inplace_partial_outlives_on { [] !(refenced && refence_partial) }
ltl no_refence_after_a_timeout { [] !(refenced && refence_timed_out) }
/* every re-fence after `on` answers a request nnf-sos had read before */
ltl refence_only_from_reads_before_on { [] !(refenced && refence_read_after_on) }
