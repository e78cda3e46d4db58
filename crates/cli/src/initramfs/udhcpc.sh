#!/bin/sh
# wulf-init's udhcpc script: udhcpc runs it with deconfig, bound, renew, leasefail or nak,
# and the lease in its environment ($interface $ip $subnet $router $dns $domain …).
case "$1" in
deconfig)
    ifconfig "$interface" 0.0.0.0 up
    ;;
bound|renew)
    ifconfig "$interface" "$ip" netmask "${subnet:-255.255.255.0}" up
    if [ -n "$router" ]; then
        while route del default gw 0.0.0.0 dev "$interface" 2>/dev/null; do :; done
        for r in $router; do
            route add default gw "$r" dev "$interface" && break
        done
    fi
    {
        [ -n "$domain" ] && echo "search $domain"
        for d in $dns; do echo "nameserver $d"; done
    } > /etc/resolv.conf
    mkdir -p /run/wulf
    {
        echo "interface='$interface'"
        echo "ip='$ip'"
        echo "subnet='$subnet'"
        echo "router='$router'"
        echo "dns='$dns'"
        echo "domain='$domain'"
        echo "serverid='$serverid'"
        echo "lease='$lease'"
    } > /run/wulf/lease
    ;;
esac
exit 0
