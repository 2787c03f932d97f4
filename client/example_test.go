package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"strconv"
	"time"

	"github.com/meridiandb/meridian/client"
)

// connect starts an in-process three-region cluster for the example (a
// real deployment passes the addresses of its nodes) and connects to it.
func connect(ctx context.Context) (c *client.Client, stop func()) {
	addrs, stopCluster, err := client.StartInProcessCluster()
	if err != nil {
		log.Fatal(err)
	}
	c, err = client.New(ctx, client.Config{Addrs: addrs, Insecure: true})
	if err != nil {
		stopCluster()
		log.Fatal(err)
	}
	return c, func() {
		_ = c.Close()
		stopCluster()
	}
}

// A bank transfer: read both balances under locks, write both. The
// accounts live in different shards; the transaction commits atomically
// with two-phase commit, and is re-run by itself if it aborts.
func ExampleClient_ReadWriteTransaction() {
	ctx := context.Background()
	c, stop := connect(ctx)
	defer stop()

	alice, zoe := []byte("alice"), []byte("zoe")
	if _, err := c.Apply(ctx, []client.Mutation{client.Put(alice, []byte("100")), client.Put(zoe, []byte("20"))}); err != nil {
		log.Fatal(err)
	}
	res, err := c.ReadWriteTransaction(ctx, func(ctx context.Context, tx *client.ReadWriteTransaction) error {
		// One call reads both: the two shards are asked in parallel.
		rows, err := tx.Read(ctx, alice, zoe)
		if err != nil {
			return err
		}
		if len(rows) != 2 {
			return errors.New("an account is missing")
		}
		from, _ := strconv.Atoi(string(rows[0].Value))
		to, _ := strconv.Atoi(string(rows[1].Value))
		if from < 30 {
			return errors.New("insufficient funds")
		}
		return tx.BufferWrite(
			client.Put(alice, []byte(strconv.Itoa(from-30))),
			client.Put(zoe, []byte(strconv.Itoa(to+30))))
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("committed:", res.Timestamp > 0)

	// Read both balances in one snapshot, at the commit timestamp.
	ro := c.ReadOnlyTransaction().WithTimestampBound(client.ReadTimestamp(res.Timestamp))
	defer ro.Close()
	for _, k := range [][]byte{alice, zoe} {
		v, err := ro.Get(ctx, k)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s: %s\n", k, v)
	}
	// Output:
	// committed: true
	// alice: 70
	// zoe: 50
}

// Single is a strong read of one key: it sees every write committed
// before it started.
func ExampleClient_Single() {
	ctx := context.Background()
	c, stop := connect(ctx)
	defer stop()

	res, err := c.Apply(ctx, []client.Mutation{client.Put([]byte("greeting"), []byte("hello, world"))})
	if err != nil {
		log.Fatal(err)
	}
	ro := c.Single()
	v, err := ro.Get(ctx, []byte("greeting"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(v))
	fmt.Println("read at or after the commit:", ro.Timestamp() >= res.Timestamp)

	_, err = c.Single().Get(ctx, []byte("farewell"))
	fmt.Println("missing key:", errors.Is(err, client.ErrNotFound))
	// Output:
	// hello, world
	// read at or after the commit: true
	// missing key: true
}

// A read-only transaction reads a consistent snapshot, without locks,
// across shards: all its reads share one timestamp.
func ExampleClient_ReadOnlyTransaction() {
	ctx := context.Background()
	c, stop := connect(ctx)
	defer stop()

	if _, err := c.Apply(ctx, []client.Mutation{
		client.Put([]byte("city/amsterdam"), []byte("nl")),
		client.Put([]byte("city/berlin"), []byte("de")),
		client.Put([]byte("country/nl"), []byte("Netherlands")),
		client.Put([]byte("town/zurich"), []byte("ch")),
	}); err != nil {
		log.Fatal(err)
	}
	ro := c.ReadOnlyTransaction()
	defer ro.Close()
	cities, err := ro.Scan(ctx, client.Prefix([]byte("city/")), 0, false)
	if err != nil {
		log.Fatal(err)
	}
	for _, kv := range cities {
		fmt.Printf("%s=%s\n", kv.Key, kv.Value)
	}
	first := ro.Timestamp()
	v, err := ro.Get(ctx, []byte("town/zurich")) // another shard
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("town/zurich=%s\n", v)
	fmt.Println("one timestamp:", ro.Timestamp() == first)
	// Output:
	// city/amsterdam=nl
	// city/berlin=de
	// town/zurich=ch
	// one timestamp: true
}

// Apply writes mutations atomically in one transaction.
func ExampleClient_Apply() {
	ctx := context.Background()
	c, stop := connect(ctx)
	defer stop()

	res, err := c.Apply(ctx, []client.Mutation{
		client.Put([]byte("apple"), []byte("red")),
		client.Put([]byte("banana"), []byte("yellow")),
		client.Put([]byte("zucchini"), []byte("green")),
	})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Apply(ctx, []client.Mutation{client.Delete([]byte("banana"))}); err != nil {
		log.Fatal(err)
	}
	// The first Apply's snapshot still has the banana; the latest has not.
	for _, bound := range []client.TimestampBound{client.ReadTimestamp(res.Timestamp), client.StrongRead()} {
		ro := c.ReadOnlyTransaction().WithTimestampBound(bound)
		kvs, err := ro.Scan(ctx, client.KeyRange{Start: []byte("a"), End: []byte("zz"), Kind: client.ClosedOpen}, 0, false)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Print(len(kvs), " keys:")
		for _, kv := range kvs {
			fmt.Printf(" %s=%s", kv.Key, kv.Value)
		}
		fmt.Println()
		ro.Close()
	}
	// Output:
	// 3 keys: apple=red banana=yellow zucchini=green
	// 2 keys: apple=red zucchini=green
}

// A bounded-staleness read is served by a nearby replica at its safe time,
// without waiting for the leader: it may miss the latest writes, but it is
// never more than the bound old and it is always a consistent snapshot.
func ExampleMaxStaleness() {
	ctx := context.Background()
	c, stop := connect(ctx)
	defer stop()

	if _, err := c.Apply(ctx, []client.Mutation{
		client.Put([]byte("inventory/apples"), []byte("7")),
		client.Put([]byte("stock/apples"), []byte("7")), // another shard, same transaction
	}); err != nil {
		log.Fatal(err)
	}
	ro := c.ReadOnlyTransaction().WithTimestampBound(client.MaxStaleness(10 * time.Second))
	defer ro.Close()
	found := 0
	for _, k := range []string{"inventory/apples", "stock/apples"} {
		_, err := ro.Get(ctx, []byte(k))
		switch {
		case err == nil:
			found++
		case !errors.Is(err, client.ErrNotFound):
			log.Fatal(err)
		}
	}
	fmt.Println("both or neither:", found != 1)
	fmt.Println("at most 10s stale:", time.Since(time.Unix(0, ro.Timestamp())) < 10*time.Second)
	// Output:
	// both or neither: true
	// at most 10s stale: true
}
